"""Answers composed from the client's device summary (what the monitor API returns)."""

from zoneinfo import ZoneInfo

import pytest

from support.answers import SummaryUnavailable, data_answer, devices_context, parse_summary

SUMMARY = {"devices": [
    # The monitor API's shape (GET /api/monitor/summary).
    {"id": "d1", "name": "Heater", "limit_kwh": 1.5, "today_kwh": 4.25, "yesterday_kwh": 7.0,
     "latest_alert": {"id": 3, "device_id": "d1", "device_name": "Heater",
                      "hour_start": "2026-11-25T18:00:00+00:00", "kwh": 1.8, "limit_kwh": 1.5,
                      "created_at": "2026-11-25T18:40:00+00:00"}},
    {"id": "d2", "name": "Fridge", "limit_kwh": 0.5, "today_kwh": 1.0, "yesterday_kwh": 9.5,
     "latest_alert": None},
]}


@pytest.fixture()
def devices():
    return parse_summary(SUMMARY)


@pytest.mark.parametrize(("action", "text", "expected", "absent"), [
    ("today", "today?", ["Heater: 4.25 kWh", "Fridge: 1.00 kWh"], []),
    ("yesterday", "yesterday", ["Heater: 7.00 kWh", "Fridge: 9.50 kWh"], []),
    ("today", "how much did the fridge use today", ["Fridge: 1.00 kWh"], ["Heater"]),
    ("limit", "limit of my heater", ["Heater: 1.50 kWh per hour"], ["Fridge"]),
    ("limit", "limits", ["Heater: 1.50 kWh", "Fridge: 0.50 kWh"], []),
    ("top_device", "which uses most", ["Today: Heater (4.25 kWh)", "Yesterday: Fridge (9.50 kWh)"], []),
    ("latest_alert", "alert", ["Heater at 25 Nov, 18:00–19:00", "1.80 kWh", "limit of 1.50 kWh"], []),
])
def test_data_answers_use_the_clients_numbers(devices, action, text, expected, absent):
    answer = data_answer(action, "Intro:", text, devices)
    assert answer.startswith("Intro:")
    for fragment in expected:
        assert fragment in answer
    for fragment in absent:
        assert fragment not in answer


def test_alert_hours_are_shown_in_the_clients_time_zone(devices):
    answer = data_answer("latest_alert", "x", "alert", devices, ZoneInfo("Europe/Bucharest"))
    assert "25 Nov, 20:00–21:00" in answer


def test_no_alert_and_no_devices_get_plain_answers(devices):
    assert "none of your devices" in data_answer("latest_alert", "x", "alert", devices[1:])
    assert "no devices yet" in data_answer("today", "x", "today", [])


def test_a_device_name_must_occur_as_whole_words(devices):
    # "Heaters" is not "Heater": fall back to every device.
    answer = data_answer("today", "x", "heaters today", devices)
    assert "Heater" in answer and "Fridge" in answer


def test_a_summary_without_devices_is_unavailable():
    with pytest.raises(SummaryUnavailable):
        parse_summary({"unexpected": True})
    assert parse_summary([]) == []


def test_llm_context_lists_each_device(devices):
    context = devices_context(devices)
    assert "Heater: today 4.25 kWh" in context and "Fridge" in context
