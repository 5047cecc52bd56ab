"""The stack check's expectations follow the simulator and the monitor it checks.

swarm/check.py predicts the hourly totals of a replay on its own; if the
simulator's stamping or the monitor's hour buckets changed, the check would
fail against a correct stack. These tests tie its predictions to the code.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.storage import hour_start
from simulator.modes import history_timestamps

CHECK_PATH = Path(__file__).resolve().parents[2] / "swarm" / "check.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("swarm_check", CHECK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


END_TIMES = [
    int(datetime(2026, 11, 26, 18, 9, 59, 999000, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2026, 11, 26, 18, 10, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2026, 3, 29, 0, 55, 12, tzinfo=UTC).timestamp() * 1000),
]


@pytest.mark.parametrize("end_ms", END_TIMES)
@pytest.mark.parametrize("count", [1, 18, 1440])
def test_replay_stamps_are_the_simulators(check, end_ms, count):
    assert check.history_stamps(count, end_ms) == history_timestamps(count, end_ms)


@pytest.mark.parametrize("end_ms", END_TIMES)
def test_expected_hours_are_the_monitors_buckets(check, end_ms):
    values = [Decimal("0.05")] * 6 + [Decimal("0.25")] * 6 + [Decimal("0.1")] * 6
    expected = check.expected_hourly(values, end_ms)
    buckets: dict[str, Decimal] = {}
    for stamp, value in zip(history_timestamps(len(values), end_ms), values, strict=True):
        hour = hour_start(stamp).replace(tzinfo=UTC).isoformat()
        buckets[hour] = buckets.get(hour, Decimal(0)) + value
    assert expected == buckets
    assert sum(expected.values()) == Decimal("2.4")


def test_hour_rows_of_the_hourly_api_are_read_in_utc(check):
    row = {"start": "2026-11-26T19:00:00+01:00", "kwh": 0.3}
    assert check.parse_hour(row) == "2026-11-26T18:00:00+00:00"


def test_a_replay_that_may_have_two_ends_accepts_either_exactly(check, monkeypatch):
    values = [Decimal("0.1")] * 12
    first = check.expected_hourly(values, END_TIMES[0])
    second = check.expected_hourly(values, END_TIMES[1])
    assert first != second

    monkeypatch.setattr(check, "hourly_totals", lambda *_: dict(second))
    assert check.exact_totals(None, "device", [first, second]) == second

    counted_twice = {**second, next(iter(second)): second[next(iter(second))] * 2}
    monkeypatch.setattr(check, "hourly_totals", lambda *_: counted_twice)
    with pytest.raises(check.CheckFailed):
        check.exact_totals(None, "device", [first, second])
