"""The outbox relay: committed events reach `ems.events` in order, once the broker
has confirmed them, across broker outages; only one relay works at a time.

These tests use a database and a RabbitMQ virtual host of their own, so that no
other relay of this test run (the whole-stack fixture runs one) takes their events.
"""

import json
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
from sqlalchemy import create_engine, text

from common.amqp import ConfirmingPublisher
from common.db import drop_databases, engine_options
from common.settings import load_settings
from common.topology import EVENTS_EXCHANGE, declare_topology
from migrations.runner import upgrade
from tests.isolation import own_vhost
from tests.processes import ServiceProcess, TcpProxy, python_module
from web import create_app
from web.accounts import create_user
from web.extensions import db
from web.inventory import create_device
from web.relay import relay_batch

TABLES = ("outbox", "devices", "users")


@pytest.fixture(scope="module")
def isolated(settings):
    """Return settings with their own portal database and virtual host."""
    suffix = secrets.token_hex(3)
    with own_vhost(f"relay-{suffix}") as amqp_url:
        own = load_settings(db_prefix=f"{settings.db_prefix}relay{suffix}_", amqp_url=amqp_url)
        upgrade(own, ("web",))
        try:
            yield own
        finally:
            drop_databases(own, ("web",))


@pytest.fixture(scope="module")
def relay_app(isolated):
    return create_app(isolated)


@pytest.fixture(autouse=True)
def empty_tables(relay_app):
    with relay_app.app_context():
        for table in TABLES:
            db.session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
        db.session.commit()


@pytest.fixture
def engine(isolated):
    engine = create_engine(isolated.database_url("web"), **engine_options())
    yield engine
    engine.dispose()


class EventTap:
    """A private queue bound to every event, to see what the relay published."""

    def __init__(self, settings):
        self.connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        self.channel = self.connection.channel()
        declare_topology(self.channel)
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
def tap(isolated):
    tap = EventTap(isolated)
    yield tap
    tap.close()


@pytest.fixture
def add_device(relay_app):
    def add(name: str, owner_id: int | None = None) -> str:
        with relay_app.app_context():
            return create_device({"name": name, "max_hourly_kwh": "2.5", "owner_id": owner_id}).id

    return add


def add_client(relay_app) -> int:
    with relay_app.app_context():
        return create_user(
            {"email": "relay-client@example.test", "name": "Relay Client", "password": "long enough"},
            relay_app.extensions["ems_password_hasher"],
        ).id


def outbox_bodies(engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT body FROM outbox ORDER BY id")).scalars()
        return [json.loads(body) if isinstance(body, str) else body for body in rows]


def unpublished_count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")).scalar()


def relay_process(isolated, name: str, amqp_url: str | None = None) -> ServiceProcess:
    relay = ServiceProcess(
        python_module("web", "relay"),
        name=name,
        env={"EMS_DB_PREFIX": isolated.db_prefix, "EMS_AMQP_URL": amqp_url or isolated.amqp_url},
    )
    relay.log_path.unlink(missing_ok=True)  # the log is appended to across runs
    return relay


def wait_until(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(message)


def test_relay_publishes_committed_events_in_sequence_order_once(
    relay_app, isolated, engine, tap, add_device
):
    client_id = add_client(relay_app)
    for number in range(5):
        add_device(f"Meter {number}", owner_id=client_id)
    expected = outbox_bodies(engine)
    publisher = ConfirmingPublisher(isolated)
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


def test_rows_confirmed_before_a_failure_are_marked_and_the_rest_retried(isolated, engine, tap, add_device):
    for number in range(3):
        add_device(f"Meter {number}")

    class BrokerDiesAfterTwo(ConfirmingPublisher):
        sent = 0

        def publish(self, *args, **kwargs):
            if self.sent == 2:
                raise pika.exceptions.StreamLostError("connection lost")
            self.sent += 1
            super().publish(*args, **kwargs)

    failing = BrokerDiesAfterTwo(isolated)
    with pytest.raises(pika.exceptions.StreamLostError):
        relay_batch(engine, failing)
    failing.close()
    assert unpublished_count(engine) == 1
    healthy = ConfirmingPublisher(isolated)
    assert relay_batch(engine, healthy) == 1
    healthy.close()
    assert [body["device"]["name"] for _, body in tap.take(3)] == ["Meter 0", "Meter 1", "Meter 2"]


@pytest.mark.slow
def test_relay_started_during_a_broker_outage_publishes_once_the_broker_is_back(
    isolated, engine, tap, add_device
):
    broker = urlsplit(isolated.amqp_url)
    proxy = TcpProxy(broker.port or 5672)  # not started: the broker is unreachable
    through_proxy = urlunsplit(broker._replace(netloc=broker.netloc.rsplit(":", 1)[0] + f":{proxy.port}"))
    relay = relay_process(isolated, "web relay outage", amqp_url=through_proxy)
    relay.start()
    try:
        device_id = add_device("Created during the outage")
        wait_until(lambda: "relay.retrying" in relay.log(), 20, "the relay never tried the broker")
        assert unpublished_count(engine) == 1 and tap.is_empty()

        proxy.start()  # the broker is back
        received = tap.take(1, timeout=30)
        assert [(key, body["device"]["id"]) for key, body in received] == [("device.created", device_id)]
        wait_until(lambda: unpublished_count(engine) == 0, 10, "the event was not marked published")

        proxy.stop()  # a second outage while the relay is connected
        second = add_device("Created during the second outage")
        time.sleep(0.5)  # let the relay notice the lost connection (bounded, not a wait for success)
        proxy.start()
        received = tap.take(1, timeout=30)
        assert [body["device"]["id"] for _, body in received] == [second]
        assert relay.running, relay.log()
    finally:
        relay.stop()
        proxy.close()
    assert tap.is_empty()  # each event exactly once here (consumers dedupe by sequence anyway)


def test_the_relay_process_stops_cleanly_on_sigterm(isolated):
    relay = relay_process(isolated, "web relay sigterm")
    relay.start()
    wait_until(lambda: "relay.started" in relay.log(), 20, "the relay did not start")
    relay.stop(timeout=10)
    assert relay.process.returncode == 0, relay.log()
    assert "relay.stopped" in relay.log()


def test_a_second_relay_waits_while_another_holds_the_relay_lock(isolated, engine, tap, add_device):
    lock_name = f"{isolated.database_name('web')}.outbox_relay"
    with engine.connect() as holder:
        assert holder.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": lock_name}).scalar() == 1
        relay = relay_process(isolated, "web relay standby")
        relay.start()
        try:
            add_device("Waiting for the active relay")
            time.sleep(1.5)  # the standby polls the lock; nothing may be published meanwhile
            assert "relay.started" not in relay.log() and tap.is_empty()
            holder.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name})
            received = tap.take(1, timeout=20)
            assert [body["device"]["name"] for _, body in received] == ["Waiting for the active relay"]
        finally:
            relay.stop()
