"""The one back-off every retry loop uses: doubling up to a cap, jittered, starting over when healthy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common import backoff as backoff_module
from common.backoff import Backoff


def test_delays_double_up_to_the_cap_each_shortened_by_at_most_the_jitter():
    backoff = Backoff(first=0.5, cap=4.0, jitter=0.2)

    delays = [backoff.next_delay() for _ in range(6)]

    for delay, undisturbed in zip(delays, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert undisturbed * 0.8 <= delay <= undisturbed


def test_a_reset_starts_over_from_the_first_delay():
    backoff = Backoff(first=1.0, cap=8.0, jitter=0.0)
    [backoff.next_delay() for _ in range(3)]

    backoff.reset()

    assert backoff.next_delay() == 1.0


def test_a_try_that_lasted_long_enough_starts_the_back_off_over(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(backoff_module.time, "monotonic", lambda: clock[0])
    backoff = Backoff(first=1.0, cap=8.0, healthy_after=30.0, jitter=0.0)
    backoff.started()
    assert [backoff.next_delay() for _ in range(3)] == [1.0, 2.0, 4.0]  # quick failures

    backoff.started()
    clock[0] += 30.0

    assert backoff.next_delay() == 1.0


def test_without_a_noted_start_the_process_age_does_not_reset_it(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(backoff_module.time, "monotonic", lambda: clock[0])
    backoff = Backoff(first=1.0, cap=8.0, jitter=0.0)
    backoff.next_delay()
    clock[0] += 3600.0

    assert backoff.next_delay() == 2.0


@given(st.floats(0.01, 10), st.floats(0.01, 100), st.floats(0, 1), st.integers(1, 40))
def test_no_delay_is_ever_negative_or_beyond_the_cap(first, cap, jitter, failures):
    backoff = Backoff(first=first, cap=max(first, cap), jitter=jitter)
    for _ in range(failures):
        assert 0 <= backoff.next_delay() <= max(first, cap)
