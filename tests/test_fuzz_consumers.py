"""Every consumer's handle step survives any message: it is processed, or dead-lettered with a reason.

The properties drive the real handle steps of the balancer, a monitor replica, the
events consumer and the alert bridge with Hypothesis-made bodies. Channels are
recording fakes (the live poison tests use the real broker); the replica and the
events consumer write to this run's real MariaDB.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from types import SimpleNamespace

import pika
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from balancer.service import Balancer, RoutingCounters
from balancer.strategies import create_strategy
from common.membership import HEARTBEAT_STATES, MAX_REPLICA, Heartbeat
from common.messages import parse_event, parse_reading
from common.topology import DEAD_LETTER_EXCHANGE, DEAD_LETTER_REASON_HEADER, INGEST_EXCHANGE
from monitor.events import EventsConsumer
from monitor.pipeline_status import REPLICA_STATES, balancer_counters, known_replicas
from monitor.storage import create_monitor_engine
from monitor.worker import IngestWorker
from notifier.alerts import _Subscription
from tests.pipeline.conftest import MONITOR_TABLES
from tests.poison import POISON
from tests.strategies import json_bytes, json_values, with_fields

NOW_MS = int(time.time() * 1000)
DEVICE = str(uuid.UUID(int=11))
READING = {"timestamp": NOW_MS - 60_000, "device_id": DEVICE, "measurement_value": 0.42}
EVENT = {"sequence": 5, "type": "device.updated", "occurred_at": "2026-11-26T17:00:00Z",
         "device": {"id": DEVICE, "name": "Meter", "owner_id": 3, "max_hourly_kwh": 1.5}}
ALERT = {"alert_id": 1, "user_id": 3, "device_id": DEVICE, "device_name": "Meter",
         "hour_start": "2026-11-26T17:00:00+00:00", "kwh": 2.0, "limit_kwh": 1.5}

POISON_BODIES = [body for _, body, _ in POISON]
_tags = itertools.count(1)


def bodies(shape: dict) -> st.SearchStrategy:
    """Return any bytes, any JSON, and messages shaped like `shape` with any field of any type."""
    return st.one_of(st.binary(max_size=512), json_values.map(json_bytes),
                     with_fields(shape, json_values).map(json_bytes))


def with_poison_examples(test):
    """Replay every known poison message as an explicit example of a one-body property."""
    for body in POISON_BODIES:
        test = example(body)(test)
    return test


class RecordingChannel:
    """Stands for a pika channel: records publishes and acks."""

    def __init__(self):
        self.published: list[tuple[str, str, bytes, pika.BasicProperties]] = []
        self.acked: list[int] = []
        self.is_open = True

    def basic_publish(self, exchange, routing_key, body, properties=None, mandatory=False):
        self.published.append((exchange, routing_key, body, properties))

    def basic_ack(self, delivery_tag, multiple=False):
        self.acked.append(delivery_tag)

    def dead_letters(self) -> list:
        return [entry for entry in self.published if entry[0] == DEAD_LETTER_EXCHANGE]


def delivery():
    return (SimpleNamespace(delivery_tag=next(_tags), consumer_tag="ctag-readings", routing_key="reading",
                            redelivered=False),
            pika.BasicProperties(message_id="fuzz"))


def stored(engine, device_id: str, timestamp: int) -> bool:
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1 FROM readings WHERE device_id = :d AND timestamp_ms = :t"),
                                  {"d": device_id, "t": timestamp}).first() is not None


def assert_dead_letter_explained(properties) -> None:
    reason = properties.headers[DEAD_LETTER_REASON_HEADER]
    assert reason.strip() and reason.isprintable()


@pytest.fixture(scope="module")
def engine(migrated):
    engine = create_monitor_engine(migrated)
    yield engine
    with engine.begin() as connection:
        for table in MONITOR_TABLES:
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names
    engine.dispose()


@given(bodies(READING))
@with_poison_examples
@settings(max_examples=500)
def test_the_balancer_routes_or_dead_letters_any_message(migrated, body):
    balancer = Balancer(migrated, create_strategy("hash", 3), RoutingCounters(3))
    # One recording channel stands for both the consuming and the publishing one.
    balancer._channel = balancer._publish_channel = channel = RecordingChannel()
    method, properties = delivery()

    balancer._on_reading(channel, method, properties, body)

    [(exchange, _, sent, sent_properties)] = channel.published
    assert exchange in (INGEST_EXCHANGE, DEAD_LETTER_EXCHANGE)
    assert sent == body, "the body goes on as it came"
    if exchange == DEAD_LETTER_EXCHANGE:
        assert_dead_letter_explained(sent_properties)


@given(st.lists(bodies(READING), min_size=1, max_size=8))
@example(POISON_BODIES + [json_bytes(READING)])
@settings(max_examples=500)
def test_a_replica_stores_or_dead_letters_every_message_of_any_batch(migrated, engine, batch):
    worker = IngestWorker(migrated, engine, replica=1)
    worker._consume_channel, worker._publish_channel = RecordingChannel(), RecordingChannel()
    # No broker connections to service while storing: store on this thread.
    worker._while_serving_connections = lambda work, *arguments: work(*arguments)
    deliveries = [(*delivery(), body) for body in batch]

    worker._process(deliveries)

    assert worker._consume_channel.acked == [deliveries[-1][0].delivery_tag], "the batch is acked once"
    dead = worker._publish_channel.dead_letters()
    for *_, properties in dead:
        assert_dead_letter_explained(properties)
    kept = list(batch)
    for _, _, body, _ in dead:
        kept.remove(body)
    for body in kept:  # not dead-lettered: a valid reading, now stored
        reading = parse_reading(body)
        assert stored(engine, reading.device_id, reading.timestamp)


@given(bodies(EVENT))
@with_poison_examples
@settings(max_examples=500)
def test_the_events_consumer_applies_or_dead_letters_any_event(migrated, engine, body):
    consumer = EventsConsumer(migrated, engine)
    channel = RecordingChannel()
    method, properties = delivery()

    consumer._handle(channel, method, properties, body)

    for *_, sent_properties in channel.dead_letters():
        assert_dead_letter_explained(sent_properties)
    if not channel.published:  # applied, or older than what is stored: it was a valid event
        parse_event(body)


class RecordingStomp:
    """Stands for a stomp.py connection: records acks and sends."""

    def __init__(self):
        self.acked: list[str] = []
        self.sent: list[tuple[str, bytes, dict]] = []

    def ack(self, ack_id):
        self.acked.append(ack_id)

    def send(self, destination, body, content_type=None, headers=None):
        self.sent.append((destination, body, headers))


@given(bodies(ALERT))
@with_poison_examples
@settings(max_examples=500)
def test_the_alert_bridge_emits_or_dead_letters_any_alert(body):
    connection, emitted = RecordingStomp(), []
    subscription = _Subscription(connection, lambda *arguments, **keywords: emitted.append(arguments))
    ack_id = f"ack-{next(_tags)}"

    subscription.on_message(SimpleNamespace(headers={"ack": ack_id, "message-id": "fuzz"}, body=body))
    for _, _, headers in connection.sent:  # the broker's receipt of each dead letter
        subscription.on_receipt(SimpleNamespace(headers={"receipt-id": headers["receipt"]}))

    assert connection.acked == [ack_id], "acked once, emitted or dead-lettered"
    assert len(emitted) + len(connection.sent) == 1
    for destination, sent, headers in connection.sent:
        assert destination.startswith(f"/exchange/{DEAD_LETTER_EXCHANGE}/")
        assert sent == body and headers[DEAD_LETTER_REASON_HEADER].isprintable()


@given(bodies({"replica": 1, "state": "active", "instance": "host-1", "lag_seconds": 0.5}))
@with_poison_examples
@settings(max_examples=500)
def test_a_heartbeat_of_any_shape_is_heard_or_refused(body):
    try:
        heartbeat = Heartbeat.from_json(body)
    except ValueError as error:  # what the balancer's handler catches
        assert str(error).strip()
        return
    assert 1 <= heartbeat.replica <= MAX_REPLICA and heartbeat.state in HEARTBEAT_STATES
    assert math.isfinite(heartbeat.lag_seconds)


@given(st.one_of(json_values, with_fields({"replicas": [{"replica": 1, "state": "active",
                                                         "readings_per_second": 2.5, "lag_seconds": 0.1,
                                                         "devices": 4}]}, json_values)))
@settings(max_examples=500)
def test_the_pipeline_page_reads_any_balancer_view_without_failing(view):
    known = known_replicas(view if isinstance(view, dict) else {"replicas": view})
    for replica, entry in known.items():
        assert 1 <= replica <= MAX_REPLICA
        assert entry["state"] in (*REPLICA_STATES, None)
        for field in ("readings_per_second", "lag_seconds"):
            assert entry[field] is None or math.isfinite(entry[field])
        assert entry["devices"] is None or type(entry["devices"]) is int


@given(st.one_of(json_values, with_fields({"strategy": "hash", "sent_at": NOW_MS, "routed": {"1": 10, "2": 7},
                                           "dead_lettered": 3}, json_values),
                 st.dictionaries(st.text(max_size=6), json_values, max_size=4).map(lambda routed: {
                     "routed": routed})))
@settings(max_examples=500)
def test_the_pipeline_page_reads_any_balancers_counters_without_failing(view):
    counters = balancer_counters(view if isinstance(view, dict) else {"routed": view})
    assert counters.strategy is None or 0 < len(counters.strategy) <= 32
    assert all(1 <= replica <= MAX_REPLICA and type(count) is int and count >= 0
               for replica, count in counters.routed.items())
    assert type(counters.dead_lettered) is int and counters.dead_lettered >= 0
