"""Unit tests of the pipeline's plain functions: confirm bookkeeping, aggregation, simulator data."""

import json
import random
from datetime import datetime, timedelta
from decimal import Decimal

from balancer.service import ConfirmTracker
from balancer.stats import routing_counters
from monitor.pipeline_status import BalancerCounters, balancer_counters
from monitor.storage import hour_start, hourly_sums, over_limit, reading_kwh
from simulator.generate_sample import SAMPLE_PATH
from simulator.household import interval_kwh
from simulator.modes import (
    LIVE_KWH_PLACES,
    demo_surge,
    demo_surging_device,
    device_scale,
    history_timestamps,
    load_bodies,
    read_csv_values,
)


def test_tracker_acks_the_settled_run_with_one_multiple_ack():
    tracker = ConfirmTracker()
    for tag in (1, 2, 3):
        tracker.published(tag, target=1)
    tracker.confirmed(2, multiple=True, ack=True)
    assert tracker.settle() == [("ack", 2)]
    assert tracker.outstanding == 1


def test_tracker_never_acks_past_an_unconfirmed_delivery():
    tracker = ConfirmTracker()
    for tag in (1, 2, 3):
        tracker.published(tag, target=1)
    tracker.confirmed(3, multiple=False, ack=True)  # confirms may come out of order
    assert tracker.settle() == []
    tracker.confirmed(1, multiple=False, ack=True)
    assert tracker.settle() == [("ack", 1)]
    tracker.confirmed(2, multiple=False, ack=True)
    assert tracker.settle() == [("ack", 3)]


def test_tracker_requeues_a_nacked_delivery_and_acks_around_it():
    tracker = ConfirmTracker()
    for tag in (1, 2, 3):
        tracker.published(tag, target=1)
    tracker.confirmed(1, multiple=False, ack=True)
    tracker.confirmed(2, multiple=False, ack=False)
    tracker.confirmed(3, multiple=False, ack=True)
    assert tracker.settle() == [("ack", 1), ("nack", 2), ("ack", 3)]


def test_tracker_waits_for_a_reopened_delivery():
    tracker = ConfirmTracker()
    tracker.published(1, target=1)
    tracker.confirmed(1, multiple=False, ack=True)
    tracker.reopen(1)  # returned as unroutable: it goes out again as a dead letter
    tracker.published(1, target=0)
    assert tracker.settle() == []
    tracker.confirmed(2, multiple=False, ack=True)
    assert tracker.settle() == [("ack", 1)]


def test_the_balancers_view_carries_its_counters_and_the_page_reads_them_back():
    view = {"strategy": "hash", "sent_at": 1_732_611_600_000, **routing_counters({0: 4, 1: 10, 2: 7})}
    assert view["routed"] == {"1": 10, "2": 7} and view["dead_lettered"] == 4
    counters = balancer_counters(json.loads(json.dumps(view)))
    assert counters == BalancerCounters("hash", datetime(2024, 11, 26, 9, 0), {1: 10, 2: 7}, 4)


def test_hour_start_is_the_utc_clock_hour():
    assert hour_start(1_732_611_600_000 + 59 * 60_000) == datetime(2024, 11, 26, 9, 0)
    assert hour_start(1_732_611_600_000 - 1) == datetime(2024, 11, 26, 8, 0)


def test_reading_kwh_is_an_exact_six_place_decimal():
    assert reading_kwh(0.1) == Decimal("0.100000")
    assert reading_kwh(0.2) + reading_kwh(0.1) == Decimal("0.3")
    assert reading_kwh(1.0000004) == Decimal("1.000000")


def test_hourly_sums_add_per_device_hour():
    hour = datetime(2024, 1, 1, 10)
    rows = [("a", hour, Decimal("0.2")), ("a", hour, Decimal("0.3")), ("b", hour, Decimal("1"))]
    assert hourly_sums(rows) == {("a", hour): Decimal("0.5"), ("b", hour): Decimal("1")}


def test_reaching_the_limit_is_not_over_it():
    assert not over_limit(Decimal("1.0"), Decimal("1.0"))
    assert over_limit(Decimal("1.000001"), Decimal("1.0"))


def test_history_ends_at_the_last_ten_minute_mark():
    stamps = history_timestamps(3, end_ms=1_732_611_600_000 + 5 * 60_000)
    assert stamps == [1_732_611_600_000 - 1_200_000, 1_732_611_600_000 - 600_000, 1_732_611_600_000]


def test_load_readings_are_distinct_per_device_and_time():
    bodies = [json.loads(body) for body in load_bodies(["a", "b"], 10, end_ms=1_732_611_600_000)]
    assert len({(body["device_id"], body["timestamp"]) for body in bodies}) == 10


def test_the_sample_has_a_household_day_shape():
    values = read_csv_values(SAMPLE_PATH)
    assert len(values) == 30 * 144
    days = [values[day * 144:(day + 1) * 144] for day in range(30)]
    night = sum(sum(day[12:30]) for day in days)  # 02:00-05:00
    evening = sum(sum(day[108:126]) for day in days)  # 18:00-21:00
    assert evening > 2.5 * night
    assert 5 < sum(values) / 30 < 40  # kWh per day of an ordinary household


def test_the_demo_pushes_the_device_with_the_lowest_limit():
    devices = [{"id": "a", "max_hourly_kwh": 3.0}, {"id": "b", "max_hourly_kwh": 0.8},
               {"id": "c", "max_hourly_kwh": None}]
    assert demo_surging_device(devices) == "b"
    assert demo_surging_device([{"id": "c", "max_hourly_kwh": None}]) is None


def test_the_demo_surges_in_the_second_part_of_every_other_hour():
    assert demo_surge(datetime(2026, 1, 1, 10, 30))
    assert not demo_surge(datetime(2026, 1, 1, 10, 5))
    assert not demo_surge(datetime(2026, 1, 1, 11, 30))


def test_a_device_with_a_limit_stays_under_it_outside_the_demo_surges():
    rng = random.Random(1)
    device = {"id": "boiler", "max_hourly_kwh": 1.2}
    evening = datetime(2025, 1, 15, 19)  # the winter evening peak
    hour_total = sum(interval_kwh(evening + timedelta(minutes=10 * n), rng, device_scale(device))
                     for n in range(1, 7))
    assert hour_total < 1.2


def test_live_readings_seconds_apart_from_a_small_device_are_not_zeros():
    small = device_scale({"id": "kitchen", "max_hourly_kwh": 0.8})
    late_evening = datetime(2026, 11, 26, 21, 30)
    # Rounded to watt-hours, five seconds of a small device's use is nothing at all.
    assert interval_kwh(late_evening, random.Random(1), small, seconds=5) == 0
    live = [interval_kwh(late_evening + timedelta(seconds=5 * n), random.Random(n), small, seconds=5,
                         places=LIVE_KWH_PLACES) for n in range(12)]
    assert all(value > 0 for value in live)


def test_a_published_message_goes_to_the_socket_in_one_write():
    from common.amqp_async import CoalescingSelectConnection

    connection = object.__new__(CoalescingSelectConnection)  # no network: only the framing path
    connection.bytes_sent = connection.frames_sent = 0
    writes = []
    connection._adapter_emit_data = writes.append
    connection._output_marshaled_frames([b"method", b"header", b"body"])
    assert writes == [b"methodheaderbody"]
    assert (connection.frames_sent, connection.bytes_sent) == (3, 16)
