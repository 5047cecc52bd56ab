"""The bot's rule matching, table-driven, against the seeded rules and synonyms."""

import pytest

from support import bot
from support.rules import seed_document, vocabulary


@pytest.fixture(scope="module")
def seeded_rules():
    return [bot.Rule(id=n, name=r["name"], patterns=tuple(r["patterns"]), answer=r["answer"],
                     action=r["action"], priority=r["priority"])
            for n, r in enumerate(seed_document()["rules"], start=1)]


def fired(text, rules):
    found = bot.match(text, rules, vocabulary())
    return found.rule.name if found else None


@pytest.mark.parametrize(("text", "rule"), [
    ("Hi!", "greeting"),
    ("hello there", "greeting"),
    ("Good morning", "greeting"),
    ("HEY", "greeting"),
    ("thank you so much", "thanks"),
    ("thx", "thanks"),
    ("bye", "goodbye"),
    ("I want to talk to a human", "talk to a human"),
    ("can I speak with a real person please", "talk to a human"),
    ("connect me to an agent", "talk to a human"),
    ("Hi, I need an administrator", "talk to a human"),
    ("how much did I use yesterday?", "yesterday's consumption"),
    ("what was my usage yesterday", "yesterday's consumption"),
    ("What's my consumption today?", "today's consumption"),
    ("how much energy so far today", "today's consumption"),
    ("why did I get an alert?", "latest alert"),
    ("my last warning", "latest alert"),
    ("how do alerts work", "how alerts work"),
    ("what is the limit of my heater", "device limit"),
    ("what's the maximum for the boiler", "device limit"),
    ("which device uses the most?", "device using most"),
    ("what is my biggest consumer device", "device using most"),
    ("what does kWh mean", "what a kWh is"),
    ("I forgot my password", "password and login"),
    ("How can I add a new meter?", "add a device"),
    ("where is the chart", "reading the chart"),
    ("the times are in the wrong time zone", "time zone"),
    ("who can see my personal data", "privacy"),
    ("help", "help"),
    ("Café? héllo", "greeting"),
])
def test_message_fires_expected_rule(text, rule, seeded_rules):
    assert fired(text, seeded_rules) == rule


@pytest.mark.parametrize("text", [
    "this",            # contains "hi"
    "high",            # starts with "hi"
    "whichever",
    "shipping address",
    "they",            # contains "hey"
    "othello",         # contains "hello"
    "thanksgiving plans",
    "ok",
    "",
    "   ?!  ",
])
def test_no_rule_fires_on_words_that_only_contain_a_pattern(text, seeded_rules):
    assert fired(text, seeded_rules) is None


@pytest.mark.parametrize(("text", "canonical"), [
    ("Good Morning!", ("hello",)),
    ("What's the USAGE?", ("whats", "the", "consumption")),
    ("kilowatt hours", ("kwh",)),
    ("Thank you", ("thanks",)),
])
def test_normalization_maps_synonyms_to_canonical_words(text, canonical):
    assert vocabulary().normalize(text) == canonical


def test_highest_priority_wins_when_several_rules_match():
    low = bot.Rule(id=1, name="low", patterns=("alert",), answer="low", priority=1)
    high = bot.Rule(id=2, name="high", patterns=("alert",), answer="high", priority=9)
    assert bot.match("an alert", [low, high], bot.Vocabulary()).rule.name == "high"


def test_equal_priorities_are_tried_in_id_order():
    first = bot.Rule(id=1, name="first", patterns=("alert",), answer="a", priority=5)
    second = bot.Rule(id=2, name="second", patterns=("alert",), answer="b", priority=5)
    assert bot.match("alert", [second, first], bot.Vocabulary()).rule.name == "first"


def test_disabled_rules_never_fire():
    rule = bot.Rule(id=1, name="off", patterns=("alert",), answer="x", enabled=False)
    assert bot.match("alert", [rule], bot.Vocabulary()) is None


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("talk to a human", "please talk to a human now", True),
    ("talk to a human", "human talk to a", False),        # a phrase keeps its order
    ("consumption + yesterday", "yesterday my consumption", True),  # terms in any order
    ("consumption + yesterday", "my consumption", False),           # every term is needed
    ("cant + log in", "I can't log in", True),
])
def test_pattern_terms_and_phrases(pattern, text, expected):
    words = bot.Vocabulary().normalize(text)
    assert bot.pattern_matches(pattern, words, bot.Vocabulary()) is expected


def test_seed_has_at_least_twelve_rules_with_a_handoff_and_every_data_action():
    rules = seed_document()["rules"]
    assert len(rules) >= 12
    actions = {rule["action"] for rule in rules}
    assert {"handoff", *bot.DATA_ACTIONS} <= actions
    assert not [r["name"] for r in rules if bot.validate_rule(r["name"], r["patterns"], r["answer"],
                                                              r["action"])]


@pytest.mark.parametrize(("name", "patterns", "answer", "action", "problem"), [
    ("", ["hi"], "hello", "reply", "name is required"),
    ("x", ["?!"], "hello", "reply", "at least one pattern"),
    ("x", ["hi"], "", "reply", "an answer is required"),
    ("x", ["hi"], "hello", "explode", "action must be one of"),
])
def test_invalid_rules_are_explained(name, patterns, answer, action, problem):
    assert any(problem in p for p in bot.validate_rule(name, patterns, answer, action))
