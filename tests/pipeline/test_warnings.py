"""Early warnings: a running hour projected over its limit warns once, before its alert, never after."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balancer.strategies import StableHash
from common.amqp import connect
from common.auth import Identity
from common.messages import ALERT, WARNING, DeviceState, Event, Reading, parse_alert
from common.topology import ALERTS_EXCHANGE, READINGS_QUEUE, alert_routing_key, ingest_queue
from monitor.alerts import FAULT_CRASH_BEFORE_ALERT_PUBLISH
from monitor.events import apply_event
from monitor.storage import store_readings
from monitor.warnings import WarningRule, projected_crossing
from tests.pipeline.conftest import REPLICAS, wait_for
from tests.processes import broker_queues

OWNER_ID = 7
HOUR = datetime(2026, 11, 26, 12, 0)
RULE = WarningRule(min_minutes=10, min_readings=3)
HOUR_MS = 3_600_000


def at(minutes: float, seconds: int = 0) -> datetime:
    return HOUR + timedelta(minutes=minutes, seconds=seconds)


def epoch_ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds() * 1000)


# --- the rule ---

@pytest.mark.parametrize(("total", "minutes", "readings", "expected"), [
    ("0.3", 15, 3, at(25)),   # 1.2 kWh an hour: 0.5 kWh at 12:25 (the last ten minutes as fast)
    ("0.1", 15, 3, None),     # 0.4 kWh an hour: within the limit
    ("0.25", 30, 6, None),    # exactly the limit at the hour's end is within it
    ("0.5", 20, 4, at(20)),   # at the limit already (equal is still fine): passes it now
    ("0.6", 20, 4, None),     # over already: that is the alert's business
    ("0.3", 9, 9, None),      # less than ten minutes of the hour
    ("0.3", 15, 2, None),     # fewer than three readings
    ("0", 15, 3, None),
])
def test_the_projection_warns_only_when_the_hour_is_known_enough_and_heads_over(total, minutes, readings,
                                                                                 expected):
    recent = Decimal(total) * 10 / minutes if minutes >= 10 else Decimal(total)  # the hour's average pace
    crossing = projected_crossing(Decimal(total), Decimal("0.5"), HOUR, epoch_ms(at(minutes)), readings, RULE,
                                  recent)
    assert crossing == expected


@pytest.mark.parametrize(("recent", "expected"), [
    ("0.1", at(33, 20)),  # slower of late than the hour's 0.015 kWh a minute: at the average, 12:33:20
    ("0.2", at(30)),      # a surge: 0.02 kWh a minute over the last ten minutes, 0.2 kWh to go at 12:20
])
def test_the_announced_crossing_follows_the_last_ten_minutes_when_they_run_faster(recent, expected):
    crossing = projected_crossing(Decimal("0.3"), Decimal("0.5"), HOUR, epoch_ms(at(20)), 4, RULE,
                                  Decimal(recent))
    assert crossing == expected


kwh = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6)


@given(total=kwh, limit=kwh, elapsed_ms=st.integers(-HOUR_MS, 2 * HOUR_MS), readings=st.integers(0, 10_000),
       recent=kwh)
def test_a_projected_crossing_lies_ahead_within_the_hour_and_only_for_an_hour_within_its_limit(
        total, limit, elapsed_ms, readings, recent):
    latest_ms = epoch_ms(HOUR) + elapsed_ms
    crossing = projected_crossing(total, limit, HOUR, latest_ms, readings, RULE, min(recent, total))
    if crossing is None:
        return
    assert total <= limit and readings >= RULE.min_readings and elapsed_ms >= RULE.min_minutes * 60_000
    assert HOUR <= crossing < HOUR + timedelta(hours=1)
    assert epoch_ms(crossing) >= latest_ms // 1000 * 1000  # not before the newest reading
    assert total * HOUR_MS / elapsed_ms > limit  # the hour's projection is over the limit


# --- storing readings (the replica's transaction) on the real MariaDB ---

def device(pipeline, limit: str = "0.5", sequence: int = 1, device_id: str | None = None) -> str:
    """Create (or update) a device of OWNER_ID in the monitor's copy; return its id."""
    device_id = device_id or str(uuid.uuid4())
    state = DeviceState(device_id, "Kitchen circuit", OWNER_ID, float(limit))
    with pipeline.engine.begin() as connection:
        apply_event(connection, Event(sequence, "device.created" if sequence == 1 else "device.updated",
                                      "2026-01-01T00:00:00Z", device=state))
    return device_id


def store(pipeline, device_id: str, values_by_minute: dict[float, float], now: datetime):
    readings = [Reading(epoch_ms(at(minute)), device_id, value) for minute, value in values_by_minute.items()]
    return store_readings(pipeline.engine, readings, replica=1, now=now, warning_rule=RULE)


def kinds(pipeline, device_id: str) -> list[tuple]:
    return [tuple(row) for row in pipeline.query(
        "SELECT kind, kwh, due_at FROM alerts WHERE device_id = :id ORDER BY id", id=device_id)]


def test_a_running_hour_heading_over_its_limit_warns_once_then_alerts(pipeline):
    device_id = device(pipeline)
    first = store(pipeline, device_id, {5: 0.1, 10: 0.1, 15: 0.1}, now=at(15.5))
    later = store(pipeline, device_id, {20: 0.1}, now=at(20.5))
    over = store(pipeline, device_id, {25: 0.2}, now=at(25.5))

    assert (first.warnings, later.warnings, over.warnings, over.alerts) == (1, 0, 0, 1)
    assert kinds(pipeline, device_id) == [(WARNING, Decimal("0.3"), at(25)), (ALERT, Decimal("0.6"), None)]


def test_a_surge_announces_the_crossing_at_the_pace_of_the_last_ten_minutes(pipeline):
    device_id = device(pipeline)
    store(pipeline, device_id, {5: 0.05, 10: 0.05, 15: 0.05, 20: 0.15}, now=at(20.5))
    # 0.3 kWh by 12:20, 0.2 of it since 12:10: 0.2 kWh to go at 0.02 a minute.
    assert kinds(pipeline, device_id) == [(WARNING, Decimal("0.3"), at(30))]


def test_an_hour_that_goes_over_in_one_batch_gets_its_alert_and_no_warning(pipeline):
    device_id = device(pipeline)
    store(pipeline, device_id, {5: 0.2, 10: 0.2, 15: 0.2}, now=at(15.5))
    assert [kind for kind, *_ in kinds(pipeline, device_id)] == [ALERT]


def test_no_warning_comes_after_the_alert_even_once_the_limit_is_raised(pipeline):
    device_id = device(pipeline)
    store(pipeline, device_id, {5: 0.2, 10: 0.2, 15: 0.2}, now=at(15.5))
    device(pipeline, limit="1.0", sequence=2, device_id=device_id)  # 0.8 kWh by 12:20 heads over 1.0
    store(pipeline, device_id, {20: 0.2}, now=at(20.5))
    assert [kind for kind, *_ in kinds(pipeline, device_id)] == [ALERT]


def test_an_hour_that_has_ended_gets_no_warning(pipeline):
    device_id = device(pipeline)
    store(pipeline, device_id, {5: 0.1, 10: 0.1, 15: 0.1}, now=at(61))
    assert kinds(pipeline, device_id) == []


def test_the_readings_of_other_batches_count_towards_the_rule(pipeline):
    device_id = device(pipeline)
    # Each batch alone has too few readings; the hour has three by the second.
    assert store(pipeline, device_id, {5: 0.1, 10: 0.1}, now=at(10.5)).warnings == 0
    assert store(pipeline, device_id, {15: 0.1}, now=at(15.5)).warnings == 1


# --- the whole pipeline: balancer, replicas, a crash between storing and publishing ---

def readings_after_the_hour_start(device_id: str, values: list[float], first_second: int) -> list[bytes]:
    """Return readings one second apart from `first_second` after the start of the current UTC hour."""
    hour_start = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    return [json.dumps({"timestamp": hour_start + (first_second + n) * 1000, "device_id": device_id,
                        "measurement_value": value}).encode() for n, value in enumerate(values)]


def wait_for_readings(pipeline, count: int) -> None:
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == count, 30,
             f"{count} readings to be stored")


@pytest.fixture
def alert_messages(pipeline):
    """Bind a queue of the test to OWNER_ID's alerts; return a function that drains it."""
    queue = f"test.warnings.{uuid.uuid4().hex[:8]}"
    connection = connect(pipeline.settings)
    channel = connection.channel()
    channel.queue_declare(queue, durable=False)
    channel.queue_bind(queue, ALERTS_EXCHANGE, alert_routing_key(OWNER_ID))
    connection.close()
    yield lambda: [parse_alert(body) for _, body in pipeline.drain(queue)]
    connection = connect(pipeline.settings)
    connection.channel().queue_delete(queue)
    connection.close()


def test_a_surge_brings_one_warning_then_one_alert_through_a_replica_crash(pipeline, alert_messages):
    if time.time() % 3600 > 3600 - 60:
        time.sleep(3600 - time.time() % 3600 + 1)  # the surge must stay within one running hour
    # Data time, not the clock: the readings span seconds, so the rule's minimum minutes is 0.
    quick_rule = {"EMS_WARNING_MIN_MINUTES": "0"}
    device_id = device(pipeline, limit="1.0")
    replica = StableHash(REPLICAS).choose(device_id)
    worker = pipeline.start_worker(replica, env={**quick_rule, FAULT_CRASH_BEFORE_ALERT_PUBLISH: "1"})
    pipeline.start_balancer("hash")

    # A steady 0.1 kWh a second from the hour's start: 1.0 kWh at 10 s past it, however the
    # readings are batched (each batch of three or more projects the same crossing).
    pipeline.publish_readings(readings_after_the_hour_start(device_id, [0.1] * 4, 1))
    wait_for(lambda: not worker.running, 30, "the replica to crash between storing and publishing")
    assert pipeline.query("SELECT kind, published_at FROM alerts") == [(WARNING, None)]

    pipeline.start_worker(replica, env=quick_rule)
    warning = wait_for(alert_messages, 30, "the warning from the restarted replica")
    pipeline.publish_readings(readings_after_the_hour_start(device_id, [0.4, 0.4], 5))
    messages = warning + wait_for(alert_messages, 30, "the alert")
    wait_for(lambda: all(broker_queues(pipeline.settings.amqp_url)[queue] == (0, 0)
                         for queue in (READINGS_QUEUE, ingest_queue(replica))), 30, "the queues to empty")
    # Once both rows are marked published no sweep sends them again, and a message sent
    # before the mark was confirmed, so routed to our queue, before it: all is there now.
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM alerts WHERE published_at IS NOT NULL")[0][0] == 2,
             30, "both rows marked published")
    messages += alert_messages()

    assert [message.kind for message in messages] == [WARNING, ALERT]
    warning = messages[0]
    assert warning.kwh in (0.3, 0.4) and (warning.limit_kwh, warning.device_name) == (1.0, "Kitchen circuit")
    assert datetime.fromisoformat(warning.due_at) - datetime.fromisoformat(warning.hour_start) == \
        timedelta(seconds=10)
    assert messages[1].kwh == pytest.approx(1.2) and messages[1].due_at is None


# --- the inbox: warnings beside alerts, styled apart, never a device's "latest alert" ---

def test_the_inbox_shows_a_warning_apart_in_the_viewers_zone_and_no_latest_alert(as_user, sql):
    client = Identity(5, "client", "Carla")
    device_id = str(uuid.uuid4())
    sql("INSERT INTO devices (id, name, owner_id, max_hourly_kwh, last_sequence) "
        "VALUES (:id, 'Kitchen <circuit>', :owner, 0.5, 1)", id=device_id, owner=client.user_id)
    sql("INSERT INTO alerts (device_id, hour_start, kind, owner_id, device_name, kwh, limit_kwh, due_at) "
        "VALUES (:id, :hour, 'warning', :owner, 'Kitchen <circuit>', 0.3, 0.5, :due)",
        id=device_id, hour=HOUR, owner=client.user_id, due=at(47))

    listing = as_user(client, "GET", "/api/monitor/alerts").json
    page = as_user(client, "GET", "/monitor/alerts?tz=Europe/Bucharest").text
    summary = as_user(client, "GET", "/api/monitor/summary").json["devices"]

    assert [(item["kind"], item["due_at"]) for item in listing["items"]] == [
        (WARNING, "2026-11-26T12:47:00+00:00")]
    assert as_user(client, "GET", "/api/monitor/alerts/unread-count").json == {"unread": 1}
    assert 'class="alert-kind-warning"' in page and "Kitchen &lt;circuit&gt;" in page
    assert "passes the limit at about\n" in page and ">14:47</time>" in page  # Bucharest is UTC+2
    assert [item["latest_alert"] for item in summary if item["id"] == device_id] == [None]
