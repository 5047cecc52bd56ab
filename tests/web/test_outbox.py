"""The transactional outbox and its relay: every change is published once the
broker has it, in order, even across broker outages; a rolled-back change never is."""

import json
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
from sqlalchemy import create_engine, text

from common.amqp import ConfirmingPublisher
from common.db import engine_options
from common.messages import parse_event
from common.topology import EVENTS_EXCHANGE, declare_topology
from tests.processes import ServiceProcess, TcpProxy, python_module
from tests.web.conftest import outbox_events
from web import inventory
from web.extensions import db
from web.inventory import create_device
from web.models import Device, OutboxEvent
from web.relay import relay_batch


class EventTap:
    """A private queue bound to every event, to see what the relay published."""

    def __init__(self, settings):
        self.connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        self.channel = self.connection.channel()
        declare_topology(self.channel, settings.monitor_replicas)
        self.queue = self.channel.queue_declare(queue="", exclusive=True).method.queue
        self.channel.queue_bind(queue=self.queue, exchange=EVENTS_EXCHANGE, routing_key="#")

    def take(self, count: int, timeout: float = 20.0) -> list[tuple[str, dict]]:
        """Return the next `count` messages as (routing key, body), waiting up to `timeout`."""
        messages, deadline = [], time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.05)
                continue
            messages.append((method.routing_key, json.loads(body)))
        return messages

    def is_empty(self) -> bool:
        return self.channel.queue_declare(queue=self.queue, passive=True).method.message_count == 0

    def close(self):
        self.connection.close()


@pytest.fixture
def tap(settings):
    tap = EventTap(settings)
    yield tap
    tap.close()


@pytest.fixture
def engine(migrated):
    engine = create_engine(migrated.database_url("web"), **engine_options())
    yield engine
    engine.dispose()


def unpublished_count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")).scalar()


def test_event_sequence_is_the_outbox_id_and_the_body_is_a_valid_event(app, make_user, make_device):
    alice = make_user("client")
    device_id = make_device("Heat pump", owner_id=alice.id, limit="3.5")
    with app.app_context():
        rows = db.session.query(OutboxEvent).order_by(OutboxEvent.id).all()
        assert [(row.routing_key, row.body["sequence"]) for row in rows] == [
            ("user.created", rows[0].id),
            ("device.created", rows[1].id),
        ]
        event = parse_event(json.dumps(rows[1].body).encode())
    assert event.device.id == device_id and event.device.owner_id == alice.id
    assert event.device.max_hourly_kwh == 3.5 and event.device.name == "Heat pump"
    assert event.occurred_at.endswith("+00:00")


def test_a_change_that_fails_after_its_event_was_written_leaves_neither(app, monkeypatch):
    recorded = inventory.record_event

    def record_then_fail(*args, **kwargs):
        recorded(*args, **kwargs)
        raise RuntimeError("database went away mid-transaction")

    monkeypatch.setattr(inventory, "record_event", record_then_fail)
    with app.app_context():
        with pytest.raises(RuntimeError):
            create_device({"name": "Doomed", "max_hourly_kwh": "1"})
        db.session.rollback()
        assert db.session.query(Device).count() == 0
    assert outbox_events(app) == []


def test_relay_publishes_committed_events_in_sequence_order_once(
    app, migrated, engine, tap, make_user, make_device
):
    alice = make_user("client")
    for number in range(5):
        make_device(f"Meter {number}", owner_id=alice.id)
    expected = outbox_events(app)
    publisher = ConfirmingPublisher(migrated)
    try:
        assert relay_batch(engine, publisher) == 6
        assert relay_batch(engine, publisher) == 0  # marked published: not sent again
    finally:
        publisher.close()
    received = tap.take(6)
    assert [body for _, body in received] == expected
    assert [key for key, _ in received] == ["user.created"] + ["device.created"] * 5
    sequences = [body["sequence"] for _, body in received]
    assert sequences == sorted(sequences)
    assert unpublished_count(engine) == 0
    assert tap.is_empty()


def test_rows_confirmed_before_a_failure_are_marked_and_the_rest_retried(
    app, migrated, engine, tap, make_device
):
    for number in range(3):
        make_device(f"Meter {number}")

    class BrokerDiesAfterTwo(ConfirmingPublisher):
        sent = 0

        def publish(self, *args, **kwargs):
            if self.sent == 2:
                raise pika.exceptions.StreamLostError("connection lost")
            self.sent += 1
            super().publish(*args, **kwargs)

    failing = BrokerDiesAfterTwo(migrated)
    with pytest.raises(pika.exceptions.StreamLostError):
        relay_batch(engine, failing)
    failing.close()
    assert unpublished_count(engine) == 1
    healthy = ConfirmingPublisher(migrated)
    assert relay_batch(engine, healthy) == 1
    healthy.close()
    assert [body["device"]["name"] for _, body in tap.take(3)] == ["Meter 0", "Meter 1", "Meter 2"]


def amqp_url_through(settings, port: int) -> str:
    parts = urlsplit(settings.amqp_url)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def wait_until(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(message)


@pytest.mark.slow
def test_relay_started_during_a_broker_outage_publishes_once_the_broker_is_back(
    app, migrated, engine, tap, make_device
):
    broker_port = urlsplit(migrated.amqp_url).port or 5672
    proxy = TcpProxy(broker_port)  # not started: the broker is unreachable
    relay = ServiceProcess(
        python_module("web", "relay"),
        env={"EMS_AMQP_URL": amqp_url_through(migrated, proxy.port)},
        name="web relay outage",
    )
    relay.log_path.unlink(missing_ok=True)
    relay.start()
    try:
        device_id = make_device("Created during the outage")
        wait_until(lambda: "relay.retrying" in relay.log(), 20, "the relay never tried the broker")
        assert unpublished_count(engine) == 1 and tap.is_empty()

        proxy.start()  # the broker is back
        received = tap.take(1, timeout=30)
        assert [(key, body["device"]["id"]) for key, body in received] == [("device.created", device_id)]
        wait_until(lambda: unpublished_count(engine) == 0, 10, "the event was not marked published")

        proxy.stop()  # a second outage while the relay is connected
        second = make_device("Created during the second outage")
        time.sleep(0.5)  # let the relay notice the lost connection (bounded, not a wait for success)
        proxy.start()
        received = tap.take(1, timeout=30)
        assert [body["device"]["id"] for _, body in received] == [second]
        assert relay.running, relay.log()
    finally:
        relay.stop()
        proxy.stop()
    assert tap.is_empty()  # each event exactly once here (consumers dedupe by sequence anyway)


def test_the_relay_process_stops_cleanly_on_sigterm(migrated):
    relay = ServiceProcess(python_module("web", "relay"), name="web relay sigterm")
    relay.log_path.unlink(missing_ok=True)  # the log is appended to across runs
    relay.start()
    wait_until(lambda: "relay.started" in relay.log(), 20, "the relay did not start")
    relay.stop(timeout=10)
    assert relay.process.returncode == 0, relay.log()
    assert "relay.stopped" in relay.log()


def test_published_rows_are_removed_after_the_retention_period(app, engine, make_device):
    from web.relay import PUBLISHED_RETENTION, delete_old_published

    make_device("Old")
    make_device("Recent")
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE outbox SET published_at = UTC_TIMESTAMP() - INTERVAL :days DAY "
                "WHERE id = (SELECT MIN(id) FROM (SELECT id FROM outbox) AS o)"
            ),
            {"days": PUBLISHED_RETENTION.days + 1},
        )
    assert delete_old_published(engine) == 1
    assert [event["device"]["name"] for event in outbox_events(app)] == ["Recent"]
    assert timedelta(days=1) < PUBLISHED_RETENTION


def test_a_second_relay_waits_while_another_holds_the_relay_lock(app, migrated, engine, tap, make_device):
    lock_name = f"{migrated.database_name('web')}.outbox_relay"
    with engine.connect() as holder:
        assert holder.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": lock_name}).scalar() == 1
        relay = ServiceProcess(python_module("web", "relay"), name="web relay standby")
        relay.log_path.unlink(missing_ok=True)
        relay.start()
        try:
            make_device("Waiting for the active relay")
            time.sleep(1.5)  # the standby polls the lock; nothing may be published meanwhile
            assert "relay.started" not in relay.log() and tap.is_empty()
            holder.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name})
            assert [body["device"]["name"] for _, body in tap.take(1, timeout=20)] == [
                "Waiting for the active relay"
            ]
        finally:
            relay.stop()
