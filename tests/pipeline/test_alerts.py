"""Over-consumption alerts and the device copy kept from the portal's events."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from balancer.strategies import StableHash
from common.amqp import connect
from common.messages import parse_alert
from common.topology import (
    ALERTS_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERS_QUEUE,
    EVENTS_EXCHANGE,
    READINGS_QUEUE,
    ingest_queue,
)
from monitor.alerts import FAULT_CRASH_BEFORE_ALERT_PUBLISH
from monitor.worker import ALERT_SWEEP_SECONDS
from tests.pipeline.conftest import REPLICAS, wait_for
from tests.processes import broker_queues

OWNER_ID = 7
HOUR_MS = 3_600_000
# A replica's sweep of unpublished alerts comes round once in this time: a late
# duplicate from it would have come.
ALERT_QUIET_SECONDS = ALERT_SWEEP_SECONDS + 0.5


@pytest.fixture
def alert_inbox(pipeline):
    """Bind a queue of the test to ems.alerts for this owner; return a function that drains it."""
    queue = f"test.alerts.{uuid.uuid4().hex[:8]}"
    connection = connect(pipeline.settings)
    channel = connection.channel()
    channel.queue_declare(queue, durable=False, auto_delete=False)
    channel.queue_bind(queue, ALERTS_EXCHANGE, f"overconsumption.{OWNER_ID}")
    connection.close()
    yield lambda: [parse_alert(body) for _, body in pipeline.drain(queue)]
    connection = connect(pipeline.settings)
    connection.channel().queue_delete(queue)
    connection.close()


def readings_in_this_hour(device_id: str, values: list[float]) -> list[bytes]:
    """Return readings a second apart from the start of the current UTC hour.

    Seconds, not minutes: early in the hour the later ones would be stamped more than
    the allowed clock skew ahead of now, and refused.
    """
    hour_start = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    return [json.dumps({"timestamp": hour_start + (n + 1) * 1000, "device_id": device_id,
                        "measurement_value": value}).encode() for n, value in enumerate(values)]


def known_device(pipeline, limit: float = 1.0, owner_id: int | None = OWNER_ID) -> str:
    """Announce a device through the events consumer and wait until the monitor knows it."""
    device_id = str(uuid.uuid4())
    pipeline.publish_device(1, device_id, owner_id, limit)
    wait_for(lambda: pipeline.query("SELECT 1 FROM devices WHERE id = :id", id=device_id), 20,
             "the device event to be applied")
    return device_id


def drain_until_quiet(drain, quiet_seconds: float = ALERT_QUIET_SECONDS) -> list:
    """Drain until nothing new has come for `quiet_seconds`; return all that came."""
    drained, quiet_since = [], time.monotonic()
    while time.monotonic() - quiet_since < quiet_seconds:
        if new := drain():
            drained += new
            quiet_since = time.monotonic()
        time.sleep(0.2)
    return drained


def wait_for_readings(pipeline, count: int) -> None:
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == count, 30,
             f"{count} readings to be stored")


def test_seven_readings_over_the_limit_raise_exactly_one_alert(pipeline, alert_inbox):
    pipeline.start_events()
    pipeline.start_workers()
    pipeline.start_balancer("round-robin")
    device_id = known_device(pipeline, limit=1.0)

    pipeline.publish_readings(readings_in_this_hour(device_id, [0.2] * 7))
    wait_for_readings(pipeline, 7)

    alerts = wait_for(lambda: pipeline.query(
        "SELECT device_id, kwh, limit_kwh, owner_id FROM alerts WHERE published_at IS NOT NULL"), 20,
        "the alert to be published")
    assert len(pipeline.query("SELECT id FROM alerts")) == 1
    assert alerts[0].owner_id == OWNER_ID
    assert float(alerts[0].kwh) > 1.0
    messages = wait_for(alert_inbox, 10, "the alert message")
    assert len(messages) == 1
    assert (messages[0].device_id, messages[0].user_id, messages[0].limit_kwh) == (device_id, OWNER_ID, 1.0)
    assert messages[0].device_name == "Test meter"


def test_an_alert_survives_a_replica_dying_between_storing_and_publishing(pipeline, alert_inbox):
    pipeline.start_events()
    device_id = known_device(pipeline, limit=1.0)
    # Only the replica that owns the device under `hash` runs, so nobody else can
    # sweep the orphaned alert: its own restart must publish it.
    replica = StableHash(REPLICAS).choose(device_id)
    worker = pipeline.start_worker(replica, env={FAULT_CRASH_BEFORE_ALERT_PUBLISH: "1"})
    pipeline.start_balancer("hash")

    pipeline.publish_readings(readings_in_this_hour(device_id, [0.2] * 7))
    wait_for(lambda: not worker.running, 30, "the replica to crash at the fault point")
    assert worker.process.returncode == 137
    # What it held unsettled when it died: an alert stored, not yet published.
    assert pipeline.query("SELECT published_at FROM alerts") == [(None,)], "stored, not yet published"
    assert alert_inbox() == []

    pipeline.start_worker(replica)  # restarted without the fault
    wait_for(lambda: pipeline.query("SELECT 1 FROM alerts WHERE published_at IS NOT NULL"), 30,
             "the restarted replica to publish the alert")
    wait_for_readings(pipeline, 7)
    messages = wait_for(alert_inbox, 10, "the alert message")
    # Late duplicates: wait until the redelivered readings are all settled, then until
    # no alert has come for a while, before counting.
    wait_for(lambda: all(broker_queues(pipeline.settings.amqp_url)[queue] == (0, 0)
                         for queue in (READINGS_QUEUE, ingest_queue(replica))), 30,
             "the readings queues to empty")
    messages += drain_until_quiet(alert_inbox)
    assert len(messages) == 1
    assert len(pipeline.query("SELECT id FROM alerts")) == 1


def test_readings_of_an_unknown_device_are_kept_and_counted_without_alerts(pipeline, alert_inbox):
    pipeline.start_workers()
    pipeline.start_balancer("round-robin")
    device_id = str(uuid.uuid4())

    pipeline.publish_readings(readings_in_this_hour(device_id, [0.5] * 4))
    wait_for_readings(pipeline, 4)

    assert pipeline.query("SELECT SUM(unknown_device_readings) FROM replica_stats")[0][0] == 4
    assert pipeline.query("SELECT COUNT(*) FROM alerts")[0][0] == 0


def test_a_deleted_device_stops_alerting(pipeline, alert_inbox):
    pipeline.start_events()
    pipeline.start_workers()
    pipeline.start_balancer("round-robin")
    device_id = known_device(pipeline, limit=1.0)
    pipeline.publish_device(2, device_id, OWNER_ID, 1.0, event_type="device.deleted")
    wait_for(lambda: pipeline.query("SELECT 1 FROM devices WHERE id = :id AND deleted", id=device_id), 20,
             "the delete event to be applied")

    pipeline.publish_readings(readings_in_this_hour(device_id, [0.3] * 5))
    wait_for_readings(pipeline, 5)

    assert pipeline.query("SELECT COUNT(*) FROM alerts")[0][0] == 0


def test_an_older_device_event_is_ignored(pipeline):
    pipeline.start_events()
    device_id = str(uuid.uuid4())
    pipeline.publish_device(5, device_id, OWNER_ID, 2.5, event_type="device.updated", name="New name")
    pipeline.publish_device(4, device_id, OWNER_ID, 9.0, event_type="device.updated", name="Old name")
    pipeline.publish_device(6, str(uuid.uuid4()), OWNER_ID, 1.0)  # a marker: applied after both
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM devices")[0][0] == 2, 20, "the events")

    assert pipeline.query("SELECT name, max_hourly_kwh FROM devices WHERE id = :id", id=device_id) == [
        ("New name", 2.5)]


def test_an_invalid_device_event_is_dead_lettered_with_its_reason(pipeline):
    pipeline.start_events()
    connection = connect(pipeline.settings)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(EVENTS_EXCHANGE, "device.created", b'{"type": "device.created", "sequence": 1}')
    connection.close()

    dead = wait_for(lambda: pipeline.drain(DEAD_LETTERS_QUEUE), 20, "the dead letter")
    assert "occurred_at" in dead[0][0].headers[DEAD_LETTER_REASON_HEADER]
    assert pipeline.events.running
