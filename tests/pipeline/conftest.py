"""Fixtures of the pipeline's integration tests: real balancer and monitor processes
on this run's RabbitMQ vhost and MariaDB databases."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime

import pika
import pytest
from sqlalchemy import text

from common.amqp import connect, take_all
from common.auth import Identity, mint_access_token
from common.messages import DeviceState, Event
from common.topology import (
    DEAD_LETTERS_QUEUE,
    EVENTS_EXCHANGE,
    MONITOR_EVENTS_QUEUE,
    READING_ROUTING_KEY,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    ingest_queue,
)
from monitor import create_app
from monitor.storage import create_monitor_engine
from simulator.publisher import ConfirmedBurstPublisher
from tests.poison import publish_poison
from tests.processes import ServiceProcess, python_module, wait_for

REPLICAS = 3
MONITOR_TABLES = ("readings", "hourly_consumption", "alerts", "devices", "replica_stats")


class Pipeline:
    """The pipeline's processes for one test: balancer, replicas, events consumer."""

    def __init__(self, settings):
        self.settings = settings
        self.engine = create_monitor_engine(settings)
        self.balancer: ServiceProcess | None = None
        self.workers: dict[int, ServiceProcess] = {}
        self.events: ServiceProcess | None = None

    # --- processes ---

    def start_balancer(self, strategy: str = "round-robin") -> ServiceProcess:
        """Start (or restart) the balancer with a strategy."""
        self.balancer = ServiceProcess(python_module("balancer"), name=f"balancer-{strategy}",
                                       env={"EMS_BALANCER_STRATEGY": strategy}).start()
        return self.balancer

    def start_worker(self, replica: int, env: dict | None = None) -> ServiceProcess:
        """Start (or restart) monitor replica `replica`."""
        self.workers[replica] = ServiceProcess(
            python_module("monitor", "worker", "--replica", str(replica)),
            name=f"monitor-{replica}", env=env).start()
        return self.workers[replica]

    def start_workers(self, env: dict | None = None) -> None:
        """Start every replica."""
        for replica in range(1, REPLICAS + 1):
            self.start_worker(replica, env)

    def start_events(self) -> ServiceProcess:
        """Start the events consumer."""
        self.events = ServiceProcess(python_module("monitor", "events"), name="monitor-events").start()
        return self.events

    def processes(self) -> list[ServiceProcess]:
        return [p for p in [self.balancer, self.events, *self.workers.values()] if p is not None]

    def stop(self) -> None:
        """Stop every process of the test (all asked at once: each takes a moment to close)."""
        for process in self.processes():
            if process.running:
                os.killpg(process.process.pid, signal.SIGTERM)
        for process in self.processes():
            process.stop()

    def logs(self) -> str:
        """Return the tail of every process's log (for failure messages)."""
        return "\n".join(f"--- {p.name}\n{p.log()[-2000:]}" for p in self.processes())

    # --- broker ---

    def publish_readings(self, bodies: Iterable[bytes]) -> int:
        """Publish raw reading bodies to ems.readings with confirms; return how many."""
        publisher = ConfirmedBurstPublisher(self.settings, READINGS_EXCHANGE, READING_ROUTING_KEY)
        return publisher.publish_all(bodies).confirmed

    @contextmanager
    def publishing_until_busy(self, bodies: list[bytes], stored_at_least: int, join_seconds: float = 60):
        """Publish `bodies` in the background; enter once that many readings are stored.

        The block is where a test breaks something mid-stream; leaving it waits
        for the publisher to finish.
        """
        publisher = threading.Thread(target=self.publish_readings, args=(bodies,))
        publisher.start()
        try:
            wait_for(lambda: self.query("SELECT COUNT(*) FROM readings")[0][0] >= stored_at_least, 60,
                     f"{stored_at_least} readings stored (the pipeline busy)")
            yield
        finally:
            publisher.join(join_seconds)

    def publish_device(self, sequence: int, device_id: str, owner_id: int | None, limit: float,
                       event_type: str = "device.created", name: str = "Test meter") -> None:
        """Publish a device event as the portal's outbox relay does."""
        event = Event(sequence, event_type, datetime.utcnow().isoformat() + "Z",
                      device=DeviceState(device_id, name, owner_id, limit))
        connection = connect(self.settings)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(EVENTS_EXCHANGE, event_type, event.to_json(),
                                  pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                                  mandatory=True)
        finally:
            connection.close()

    def drain(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        """Take every message now in `queue`."""
        connection = connect(self.settings)
        try:
            return [(properties, body) for _, properties, body in take_all(connection.channel(), queue)]
        finally:
            connection.close()

    def publish_raw(self, exchange: str, routing_key: str, bodies: Iterable[bytes] = (),
                    poison: bool = False) -> None:
        """Publish the poison messages (if asked), then `bodies`, with confirms, in that order."""
        connection = connect(self.settings)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            if poison:
                publish_poison(channel, exchange, routing_key)
            for body in bodies:
                channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(delivery_mode=2),
                                      mandatory=True)
        finally:
            connection.close()

    def wait_consuming(self, queue: str, timeout: float = 30) -> None:
        """Wait until `queue` has a consumer (a process has started and subscribed)."""
        def consumers() -> int:
            connection = connect(self.settings)
            try:
                return connection.channel().queue_declare(queue, passive=True).method.consumer_count
            except pika.exceptions.ChannelClosedByBroker:
                return 0  # not declared yet: a replica declares its own queue when it starts
            finally:
                if connection.is_open:
                    connection.close()
        wait_for(consumers, timeout, f"a consumer on {queue}\n{self.logs()}", interval=0.2)

    def purge_queues(self) -> None:
        """Empty every queue the pipeline uses."""
        connection = connect(self.settings)
        try:
            channel = connection.channel()
            for queue in (READINGS_QUEUE, DEAD_LETTERS_QUEUE, MONITOR_EVENTS_QUEUE):
                channel.queue_purge(queue)
            for replica in range(1, REPLICAS + 1):  # a replica's queue exists once it has run
                try:
                    channel.queue_purge(ingest_queue(replica))
                except pika.exceptions.ChannelClosedByBroker:
                    channel = connection.channel()
        finally:
            connection.close()

    # --- database ---

    def query(self, sql: str, **parameters) -> list:
        """Run a query on the monitor database and return its rows."""
        with self.engine.connect() as connection:
            return connection.execute(text(sql), parameters).all()

    def truncate(self) -> None:
        """Empty the monitor's tables."""
        with self.engine.begin() as connection:
            for table in MONITOR_TABLES:
                connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names

    def processed_messages(self) -> int:
        """Return how many valid reading messages the replicas have handled (stored or duplicate)."""
        value = self.query("SELECT COALESCE(SUM(readings_stored + duplicates), 0) FROM replica_stats")[0][0]
        return int(value)

    def hourly_totals(self) -> dict:
        """Return {(device_id, hour_start): kwh} from hourly_consumption."""
        return {(device, hour): kwh for device, hour, kwh in
                self.query("SELECT device_id, hour_start, kwh FROM hourly_consumption")}


@pytest.fixture
def pipeline(migrated):
    """Give a test an empty monitor database, empty queues and a Pipeline to start processes."""
    running = Pipeline(migrated)
    running.truncate()
    running.purge_queues()
    try:
        yield running
    finally:
        running.stop()
        running.engine.dispose()


# --- the monitor API in-process (Flask test client on this run's database) ---

@pytest.fixture
def app(migrated):
    application = create_app(migrated)
    engine = application.extensions["monitor_engine"]
    with engine.begin() as connection:
        for table in MONITOR_TABLES:
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names
    yield application
    engine.dispose()


@pytest.fixture
def sql(app):
    def run(statement: str, **parameters):
        with app.extensions["monitor_engine"].begin() as connection:
            return connection.execute(text(statement), parameters)
    return run


@pytest.fixture
def as_user(app, migrated):
    """Return a function that makes requests with a bearer token of an identity."""
    def request(identity: Identity, method: str, path: str, headers: dict | None = None):
        token = mint_access_token(migrated, identity)
        headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        return app.test_client().open(path, method=method, headers=headers)
    return request
