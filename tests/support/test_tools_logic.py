"""The administrators' tools as plain functions: placeholders, ratings, stats, transcript, search patterns."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from common.auth import Identity
from support import canned, notes, ratings, stats, transcript
from support.assignment import MAX_SEARCH_WORDS, fulltext_terms, like_pattern
from tests.strategies import texts

# These parsers are small and their inputs simple: fewer examples than the suite's 500 keep
# this module's time down (about a second each).
FUZZ = settings(max_examples=150)
VALUES = {"client_name": "Alice {Martin}", "client_first_name": "Alice", "admin_name": "Ada"}


@pytest.mark.parametrize(("text", "reason"), [
    ("Hello {name}", "unknown placeholder {name}: use {client_name}, {client_first_name}, {admin_name}"),
    ("Hello {client_name.__class__}", "unknown placeholder {client_name.__class__}"),
    ("Hello {0}", "unknown placeholder {0}"),
    ("Hello {}", "unknown placeholder {}"),
    ("Hello {client_name:>10}", "{client_name} takes no format"),
    ("Hello {client_name!r}", "{client_name} takes no format"),
    ("Hello {client_name", "a brace without its pair"),
    ("Hello client_name}", "a brace without its pair"),
])
def test_a_canned_reply_with_an_unknown_or_malformed_placeholder_is_refused(text, reason):
    errors = canned.validate("Greeting", text)
    assert len(errors) == 1 and errors[0].startswith(reason)


def test_placeholders_are_filled_with_values_taken_as_they_are():
    text = "Hello {client_first_name} ({client_name}), {admin_name} here. {{braces}} stay."
    assert canned.validate("Greeting", text) == []
    # A name holding braces is inserted, never read as another placeholder.
    assert canned.fill(text, VALUES) == "Hello Alice (Alice {Martin}), Ada here. {braces} stay."


def test_placeholder_values_come_from_the_conversation_and_the_admin():
    conversation = SimpleNamespace(client_name="Alice Martin")
    values = canned.placeholder_values(conversation, Identity(1, "admin", "Ada Admin"))
    assert values == {"client_name": "Alice Martin", "client_first_name": "Alice", "admin_name": "Ada Admin"}
    assert canned.placeholder_values(SimpleNamespace(client_name=""), Identity(1, "admin", "A"))[
        "client_first_name"] == "there"


def test_title_and_text_are_required_and_limited():
    assert canned.validate("", "") == ["a title is required", "a text is required"]
    assert canned.validate("t" * 81, "x" * 2001) == ["the title has 81 characters, the limit is 80",
                                                     "the text has 2001 characters, the limit is 2000"]


@FUZZ
@given(title=texts, text=st.one_of(texts, st.text(st.sampled_from("{}ab_:!. client_name"), max_size=40)))
@example(title="t", text="{client_name}")
@example(title="t", text="\ud800")
def test_any_canned_text_is_refused_with_reasons_or_fills_like_format(title, text):
    errors = canned.validate(title, text)
    assert all(isinstance(error, str) and error for error in errors)
    if not errors:
        assert canned.fill(text, VALUES) == text.format_map(VALUES)


@FUZZ
@given(stars=st.one_of(st.none(), texts, st.integers()), comment=st.one_of(st.none(), texts))
@example(stars="5", comment="Great")
@example(stars=" 3 ", comment="\ud800")
@example(stars="٣", comment=None)
def test_any_rating_form_is_a_valid_rating_or_refused_with_a_reason(stars, comment):
    try:
        form = ratings.parse_rating(stars, comment)
    except ratings.RatingRefused as error:
        assert str(error) and error.status == 422
    else:
        assert form.stars in ratings.STARS
        assert form.comment is None or 0 < len(form.comment) <= ratings.MAX_COMMENT_CHARS


def test_a_rating_needs_one_to_five_stars_and_a_short_comment():
    assert ratings.parse_rating("4", "  fine  ") == ratings.RatingForm(4, "fine")
    assert ratings.parse_rating("5", "") == ratings.RatingForm(5, None)
    for stars in ("0", "6", "", "4.5", None):
        with pytest.raises(ratings.RatingRefused, match="choose from 1 to 5 stars"):
            ratings.parse_rating(stars, "")
    with pytest.raises(ratings.RatingRefused, match="the limit is 1000"):
        ratings.parse_rating("3", "x" * 1001)


@FUZZ
@given(text=texts)
@example(text="50%_off\\")
def test_a_search_pattern_takes_like_wildcards_literally(text):
    pattern = like_pattern(text)
    assert pattern.startswith("%") and pattern.endswith("%")
    inner = pattern[1:-1]
    # Every %, _ and \ of the text is escaped: none acts as a wildcard.
    assert inner.replace("\\\\", "").replace("\\%", "").replace("\\_", "").count("%") == 0
    assert inner.replace("\\\\", "").replace("\\%", "").replace("\\_", "").count("_") == 0


BUCHAREST = ZoneInfo("Europe/Bucharest")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Return a naive UTC time on December `day`, 2026."""
    return datetime(2026, 12, day, hour, minute)


def test_stats_count_per_day_in_the_viewers_zone_and_take_medians():
    days = stats.window(date(2026, 12, 3), days=3)  # 1, 2, 3 December
    episodes = [
        # Opened 1 Dec 23:30 UTC = 2 Dec 01:30 in Bucharest; an administrator answered after 10 min.
        stats.Episode(at(1, 23, 30), resolved_at=at(2, 0, 30), first_response_at=at(1, 23, 40), rating=5),
        stats.Episode(at(2, 9), resolved_at=at(2, 9, 20), bot_only=True, rating=3),
        stats.Episode(at(2, 10), resolved_at=at(3, 10), first_response_at=at(2, 10, 30)),
        stats.Episode(at(3, 8)),  # still open
        stats.Episode(at(20, 8), resolved_at=at(20, 9)),  # outside the window
    ]
    summary = stats.summarize(episodes, days, BUCHAREST)
    assert summary.opened == [0, 3, 1]
    assert summary.resolved == [0, 2, 1]
    assert summary.resolved_total == 3
    assert summary.median_first_response_minutes == 20  # of 10 and 30
    assert summary.median_resolution_minutes == 60  # of 60, 20 and 1440
    assert summary.resolution_minutes == [0.0, 40.0, 1440.0]
    assert summary.bot_only_share == pytest.approx(1 / 3)
    assert summary.ratings == [0, 0, 1, 0, 1] and summary.average_rating == 4


def test_stats_of_no_episodes_have_no_medians():
    summary = stats.summarize([], stats.window(date(2026, 12, 3)), BUCHAREST)
    assert summary.opened == [0] * stats.DAYS and summary.bot_only_share is None
    assert summary.median_first_response_minutes is None and summary.average_rating is None


def test_grouped_bars_stay_inside_the_plot_and_scale_to_the_largest_value():
    chart = stats.grouped_bar_chart(["a", "b", "c"], [("opened", [0, 4, 2]), ("resolved", [1, 0, 5])], "n")
    assert len(chart.bars) == 6
    assert all(chart.left <= bar.x and bar.x + bar.width <= chart.right for bar in chart.bars)
    assert all(bar.y + bar.height == pytest.approx(chart.baseline_y) for bar in chart.bars)
    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert tallest.title == "c: 5 n resolved" and chart.ticks[-1].label == "10"
    assert [bar.height for bar in chart.bars if bar.title.startswith("b")][1] == 0


def test_a_transcript_states_its_zone_and_keeps_text_as_typed():
    conversation = SimpleNamespace(id=7, client_id=42, client_name="Alice <b>Martin</b>")
    messages = [SimpleNamespace(created_at=at(1, 23, 30), sender_name="Alice", sender_role="client",
                                body="Hello <script>\nsecond line"),
                SimpleNamespace(created_at=at(1, 23, 31) + timedelta(seconds=5), sender_name="",
                                sender_role="bot", body="Hi")]
    text = "".join(transcript.transcript_lines(conversation, messages, ZoneInfo("Asia/Tokyo")))
    assert text.splitlines()[:2] == ["Support conversation 7 with Alice <b>Martin</b> (client #42)",
                                     "Times are in Asia/Tokyo."]
    assert "[2026-12-02 08:30:00 +0900] Alice (client):\n  Hello <script>\n  second line\n" in text
    assert "[2026-12-02 08:31:05 +0900] bot (bot):\n  Hi\n" in text


@FUZZ
@given(raw=texts)
@example(raw="   ")
@example(raw="x" * 2001)
def test_any_note_text_is_kept_trimmed_or_refused_with_a_reason(raw):
    body, error = notes.clean_note(raw)
    assert body == raw.strip()
    assert error is None or (isinstance(error, str) and error)
    if error is None:
        assert 0 < len(body) <= 2000


@FUZZ
@given(text=st.one_of(texts, st.text(st.sampled_from('ab1_+-*"()<>~@ ') , max_size=30)))
@example(text='boiler +leaks -"heat pump" (x) ~y* @3')
def test_a_search_reaches_the_full_text_index_as_required_word_prefixes_only(text):
    terms = fulltext_terms(text)
    if terms is None:
        return
    words = terms.split(" ")
    assert 1 <= len(words) <= MAX_SEARCH_WORDS
    for word in words:  # no operator of the boolean mode comes from the text
        assert word[0] == "+" and word[-1] == "*" and word[1:-1].isalnum() and len(word[1:-1]) >= 3


def test_search_words_are_letters_and_digits_of_three_or_more_without_stopwords():
    assert fulltext_terms('boiler +leaks -"heat pump" (x) the ~é12') == "+boiler* +leaks* +heat* +pump* +é12*"
    assert fulltext_terms("a b 1_2 %_%") is None
