"""The bot's answer to "how much did I spend this month?": the monitor's costs, read and summed as shown."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from support import bot
from support.answers import data_answer, devices_context, parse_summary
from support.rules import SEED_FILE
from tests.strategies import field_values, json_values, with_fields, with_inner_fields

SUMMARY = {"currency": "RON", "timezone": "Europe/Bucharest", "devices": [
    # The monitor API's shape (GET /api/monitor/summary) with costs under a tariff.
    {"id": "d1", "name": "Heat pump", "limit_kwh": 3.5, "today_kwh": 4.25, "yesterday_kwh": 7.0,
     "month_kwh": 51.5, "today_cost": "3.41", "month_cost": "42.87", "latest_alert": None},
    {"id": "d2", "name": "Kitchen circuit", "limit_kwh": 0.5, "today_kwh": 1.0, "yesterday_kwh": 2.0,
     "month_kwh": 12.0, "today_cost": "0.85", "month_cost": "10.21", "latest_alert": None},
]}


def seed_rules() -> tuple[list[bot.Rule], bot.Vocabulary]:
    document = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    rules = [bot.Rule(name=rule["name"], patterns=tuple(rule["patterns"]), answer=rule["answer"],
                      action=rule.get("action", "reply"), priority=rule["priority"])
             for rule in document["rules"]]
    return rules, bot.Vocabulary.from_mapping(document["synonyms"])


@pytest.mark.parametrize("question", [
    "How much did I spend this month?", "how much have I spent so far", "What's my bill?",
    "how much will I pay this month", "what does my electricity cost",
    "how much money did the heat pump cost",
    "How much did I spend today?",
])
def test_questions_about_money_reach_the_spend_rule(question):
    rules, vocabulary = seed_rules()
    assert bot.match(question, rules, vocabulary).rule.action == "spend"


@pytest.mark.parametrize(("question", "action"), [("how much did I use today?", "today"),
                                                  ("which device uses most?", "top_device")])
def test_questions_about_kwh_still_reach_their_rules(question, action):
    rules, vocabulary = seed_rules()
    assert bot.match(question, rules, vocabulary).rule.action == action


def test_this_months_spend_lists_each_device_and_the_sum_of_the_lines():
    answer = data_answer("spend", "Intro:", "how much did I spend this month?", parse_summary(SUMMARY))
    assert answer.splitlines() == ["Intro:", "• Heat pump: 51.50 kWh, 42.87 RON",
                                   "• Kitchen circuit: 12.00 kWh, 10.21 RON",
                                   "This month so far in all: 53.08 RON."]


def test_todays_spend_when_the_question_says_today_and_one_device_when_named():
    devices = parse_summary(SUMMARY)
    assert "This month" not in data_answer("spend", "x", "what did I spend today", devices)
    assert "Today so far in all: 4.26 RON." in data_answer("spend", "x", "what did I spend today", devices)
    answer = data_answer("spend", "x", "what did the kitchen circuit cost", devices)
    assert answer.splitlines()[1:] == ["• Kitchen circuit: 12.00 kWh, 10.21 RON"]


def test_without_a_tariff_the_bot_says_so_and_gives_kwh():
    summary = {**SUMMARY, "currency": None,
               "devices": [{**device, "today_cost": None, "month_cost": None}
                           for device in SUMMARY["devices"]]}
    answer = data_answer("spend", "x", "how much did I spend this month", parse_summary(summary))
    assert "No tariff is set yet" in answer and "Heat pump: 51.50 kWh" in answer and "RON" not in answer


def test_the_llms_context_carries_the_costs():
    assert "this month 51.50 kWh costing 42.87 RON" in devices_context(parse_summary(SUMMARY))


@given(st.one_of(json_values, with_fields(SUMMARY, field_values),
                 with_inner_fields({**SUMMARY, "devices": SUMMARY["devices"][0]}, "devices", field_values)
                 .map(lambda summary: {**summary, "devices": [summary["devices"]]})))
@example({**SUMMARY, "devices": [{**SUMMARY["devices"][0], "month_cost": "NaN"}]})
@example({**SUMMARY, "devices": [{**SUMMARY["devices"][0], "month_cost": "1e999999999"}]})
@example({**SUMMARY, "currency": "<b>"})
@example({**SUMMARY, "devices": [{**SUMMARY["devices"][0], "month_kwh": 10**400}]})
@settings(max_examples=150)  # composing answers is slow-ish; 150 varied summaries cover the shapes
def test_any_summary_gives_a_spend_answer_or_a_clear_refusal(payload):
    try:
        devices = parse_summary(payload)
    except Exception as error:  # noqa: BLE001 - the one refusal allowed is SummaryUnavailable
        assert type(error).__name__ == "SummaryUnavailable"
        return
    for device in devices:
        assert device.month_cost is None or device.month_cost.is_finite()
        assert device.currency is None or (len(device.currency) == 3 and device.currency.isalpha())
    assert isinstance(data_answer("spend", "x", "spend this month", devices), str)
    assert isinstance(devices_context(devices), str)
    assert all(isinstance(d.today_cost, Decimal | None) for d in devices)
