"""Benchmark the notifier: alert latency to many sockets, memory per socket, sockets per process.

    .venv/bin/python bench/alerts.py [--via pipeline|alerts] [--clients 2000] [--alerts 1000]
                                     [--max-connections 5000]

Starts one notifier (`python -m notifier`) on a free port against a RabbitMQ
virtual host of its own and connects `--clients` Socket.IO clients (each a
different user, so each in its own room). Then `--alerts` alerts are raised,
each for a different connected user:

- `--via pipeline` (default): the real balancer, three monitor replicas and the
  monitor's events consumer run on a database prefix of their own; each user
  gets a device (a `device.created` event, as the portal publishes) and one
  reading over its limit is published as the simulator does. The latency runs
  from the reading's publish to the owner's `alert` event.
- `--via alerts`: the alerts are published straight to `ems.alerts` as the
  monitor does, to measure the notifier alone.

Then it keeps connecting clients up to `--max-connections` to find how many
sockets the one process holds. Prints figures; asserts nothing (the goals are
p99 < 250 ms and at least 5,000 sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import sys
import threading
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import pymysql  # noqa: E402
import socketio  # noqa: E402

from bench.measure import freeze_simulated_clients, percentile, raise_open_files_limit  # noqa: E402
from common.amqp import ConfirmingPublisher, connect  # noqa: E402
from common.auth import Identity, mint_access_token  # noqa: E402
from common.db import create_databases, drop_databases  # noqa: E402
from common.messages import Alert, DeviceState, Event, Reading  # noqa: E402
from common.settings import load_settings  # noqa: E402
from common.topology import (  # noqa: E402
    ALERTS_EXCHANGE,
    EVENTS_EXCHANGE,
    READING_ROUTING_KEY,
    READINGS_EXCHANGE,
    alert_routing_key,
)
from migrations.runner import upgrade  # noqa: E402
from tests.isolation import isolated  # noqa: E402
from tests.processes import ServiceProcess, free_port, python_module, wait_for_port  # noqa: E402

CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT_SECONDS = 30
DELIVERY_GRACE_SECONDS = 30
GOAL_P99_MS = 250
GOAL_CONNECTIONS = 5000
LIMIT_KWH = 0.1
OVER_LIMIT_KWH = 0.5
TEN_MINUTES_MS = 600_000


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--via", choices=("pipeline", "alerts"), default="pipeline",
                        help="raise alerts with readings through the pipeline, or publish them")
    parser.add_argument("--clients", type=int, default=2000, help="sockets during the latency run")
    parser.add_argument("--alerts", type=int, default=1000, help="alerts to publish")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="readings (or alerts) published per second")
    parser.add_argument("--max-connections", type=int, default=5000,
                        help="sockets to try to hold at once on the one notifier")
    return parser.parse_args()


def rss_kib(pid: int) -> int:
    """Return the resident memory of process `pid` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Clients:
    """Many Socket.IO clients, one user each, recording when each alert arrives."""

    def __init__(self, url: str, settings, http: aiohttp.ClientSession):
        self.url = url
        self.settings = settings
        self.http = http
        self.sockets: dict[int, socketio.AsyncClient] = {}
        self.received: dict[str, float] = {}  # device id -> when its alert arrived
        self.failures: list[str] = []

    def connected(self) -> int:
        return sum(1 for client in self.sockets.values() if client.connected)

    async def connect_one(self, user_id: int, gate: asyncio.Semaphore) -> None:
        token = mint_access_token(self.settings, Identity(user_id, "client", f"bench {user_id}"))
        client = socketio.AsyncClient(reconnection=False, http_session=self.http)

        @client.on("alert")
        async def on_alert(alert):
            self.received.setdefault(alert["device_id"], time.perf_counter())

        async with gate:
            try:
                await client.connect(self.url, transports=["websocket"], auth={"token": token},
                                     wait_timeout=CONNECT_TIMEOUT_SECONDS)
                self.sockets[user_id] = client
            except (TimeoutError, socketio.exceptions.ConnectionError, OSError) as error:
                self.failures.append(f"{type(error).__name__}: {error}")

    async def connect_many(self, count: int) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        first = max(self.sockets, default=1_000_000) + 1
        await asyncio.gather(*(self.connect_one(first + n, gate) for n in range(count)))

    async def disconnect_all(self) -> None:
        await asyncio.gather(*(client.disconnect() for client in self.sockets.values()),
                             return_exceptions=True)


def paced(items: list, rate: float):
    """Yield `items` at `rate` per second."""
    next_at = time.perf_counter()
    for item in items:
        yield item
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.perf_counter()))


def publish_alerts(settings, owners: dict[str, int], rate: float, published: dict[str, float]) -> None:
    """Publish an alert for each device's owner straight to ems.alerts (runs in a thread)."""
    with closing(ConfirmingPublisher(settings)) as publisher:
        for alert_id, (device_id, user_id) in enumerate(paced(list(owners.items()), rate), 1):
            alert = Alert(alert_id=alert_id, user_id=user_id, device_id=device_id,
                          device_name="Bench meter", hour_start="2026-11-26T17:00:00+00:00",
                          kwh=OVER_LIMIT_KWH, limit_kwh=LIMIT_KWH)
            published[device_id] = time.perf_counter()
            publisher.publish(ALERTS_EXCHANGE, alert_routing_key(user_id), alert.to_json())


def publish_readings(settings, owners: dict[str, int], rate: float,
                     published: dict[str, float]) -> None:
    """Publish one reading over its limit for each device, as the simulator does (in a thread)."""
    stamp = int(time.time() * 1000) // TEN_MINUTES_MS * TEN_MINUTES_MS
    with closing(ConfirmingPublisher(settings)) as publisher:
        for device_id in paced(list(owners), rate):
            published[device_id] = time.perf_counter()
            publisher.publish(READINGS_EXCHANGE, READING_ROUTING_KEY,
                              Reading(stamp, device_id, OVER_LIMIT_KWH).to_json())


class Pipeline:
    """The balancer, the monitor replicas and the monitor's events consumer, on a bench database."""

    def __init__(self, settings):
        self.settings = settings
        commands = [("monitor", "events"), ("balancer",)]
        commands += [("monitor", "worker", "--replica", str(n))
                     for n in range(1, settings.monitor_replicas + 1)]
        self.processes = [ServiceProcess(python_module(*command), name="bench-" + "-".join(command),
                                         env={"EMS_LOG_LEVEL": "WARNING"})
                          for command in commands]

    def __enter__(self) -> Pipeline:
        create_databases(self.settings, ("monitor",))
        upgrade(self.settings, ("monitor",))
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.stop()
        drop_databases(self.settings, ("monitor",))

    def add_devices(self, owners: dict[str, int]) -> None:
        """Announce a device per owner as the portal does; wait until the monitor has them all."""
        occurred_at = datetime.now(UTC).isoformat()
        with closing(ConfirmingPublisher(self.settings)) as publisher:
            for sequence, (device_id, user_id) in enumerate(owners.items(), 1):
                event = Event(sequence, "device.created", occurred_at,
                              device=DeviceState(device_id, "Bench meter", user_id, LIMIT_KWH))
                publisher.publish(EVENTS_EXCHANGE, event.type, event.to_json())
        connection = pymysql.connect(host=self.settings.db_host, port=self.settings.db_port,
                                     user=self.settings.db_user, password=self.settings.db_password,
                                     database=self.settings.database_name("monitor"), autocommit=True)
        deadline = time.monotonic() + DELIVERY_GRACE_SECONDS
        try:
            with connection.cursor() as cursor:
                while time.monotonic() < deadline:
                    cursor.execute("SELECT COUNT(*) FROM devices")
                    if cursor.fetchone()[0] >= len(owners):
                        return
                    time.sleep(0.2)
        finally:
            connection.close()
        raise RuntimeError("the monitor did not learn of every bench device in time")


class AlertTap:
    """A private queue on ems.alerts noting when each device's alert was published."""

    def __init__(self, settings):
        self.settings = settings
        self.seen: dict[str, float] = {}

    def __enter__(self) -> AlertTap:
        self._connection = connect(self.settings)
        channel = self._connection.channel()
        queue = channel.queue_declare(queue="", exclusive=True).method.queue
        channel.queue_bind(queue, ALERTS_EXCHANGE, routing_key="overconsumption.*")
        channel.basic_consume(queue, self._on_alert, auto_ack=True)
        self._thread = threading.Thread(target=channel.start_consuming, daemon=True)
        self._thread.start()
        self._channel = channel
        return self

    def _on_alert(self, channel, method, properties, body):
        self.seen.setdefault(json.loads(body)["device_id"], time.perf_counter())

    def __exit__(self, *exc) -> None:
        self._connection.add_callback_threadsafe(self._channel.stop_consuming)
        self._thread.join(10)
        self._connection.close()


def print_latencies(label: str, start: dict[str, float], end: dict[str, float]) -> None:
    """Print p50/p99 of end - start over the devices in both."""
    latencies = [(end[d] - start[d]) * 1000 for d in start if d in end]
    if latencies:
        print(f"{label}: p50 {statistics.median(latencies):.1f} ms, "
              f"p99 {percentile(latencies, 0.99):.1f} ms")


async def wait_for_deliveries(clients: Clients, expected: int) -> None:
    deadline = time.monotonic() + DELIVERY_GRACE_SECONDS
    while len(clients.received) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def run(arguments: argparse.Namespace, settings, notifier: ServiceProcess, url: str,
              pipeline: Pipeline | None) -> None:
    pid = notifier.process.pid
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        clients = Clients(url, settings, http)
        rss_idle = rss_kib(pid)

        started = time.perf_counter()
        await clients.connect_many(arguments.clients)
        print(f"connected {clients.connected()} of {arguments.clients} clients "
              f"in {time.perf_counter() - started:.1f} s ({len(clients.failures)} failed)")
        await asyncio.sleep(2)  # let the notifier settle before measuring memory
        freeze_simulated_clients()
        held = clients.connected()
        rss_loaded = rss_kib(pid)
        per_socket = (rss_loaded - rss_idle) / held if held else float("nan")

        users = random.sample(list(clients.sockets), min(arguments.alerts, held))
        owners = {str(uuid.uuid4()): user_id for user_id in users}
        published: dict[str, float] = {}
        if pipeline is not None:
            await asyncio.to_thread(pipeline.add_devices, owners)
            with AlertTap(settings) as tap:
                await asyncio.to_thread(publish_readings, settings, owners, arguments.rate, published)
                await wait_for_deliveries(clients, len(owners))
            print_latencies("  of which reading -> alert on ems.alerts (monitor)", published, tap.seen)
            print_latencies("  of which ems.alerts -> client event (notifier)", tap.seen,
                            clients.received)
        else:
            await asyncio.to_thread(publish_alerts, settings, owners, arguments.rate, published)
            await wait_for_deliveries(clients, len(owners))
        latencies = [(clients.received[d] - published[d]) * 1000
                     for d in published if d in clients.received]

        source = "readings through the pipeline" if pipeline else "alerts published to ems.alerts"
        print(f"alerts ({source}, {arguments.rate:g}/s): {len(latencies)} of {len(published)} "
              "delivered to their owner")
        if latencies:
            p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
            print(f"latency publish -> client event: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"max {max(latencies):.1f} ms (goal p99 < {GOAL_P99_MS} ms)")
        print(f"notifier RSS: {rss_idle / 1024:.1f} MiB idle, {rss_loaded / 1024:.1f} MiB with "
              f"{held} sockets = {per_socket:.1f} KiB per socket")

        if arguments.max_connections > held:
            started = time.perf_counter()
            await clients.connect_many(arguments.max_connections - held)
            await asyncio.sleep(5)  # still held a few seconds later, not just accepted
            most = clients.connected()
            print(f"most concurrent sockets held by one notifier: {most} "
                  f"(tried {arguments.max_connections}, goal >= {GOAL_CONNECTIONS}; "
                  f"ramp {time.perf_counter() - started - 5:.1f} s, RSS {rss_kib(pid) / 1024:.1f} MiB,"
                  f" {len(clients.failures)} failed connects)")
            if clients.failures:
                print(f"first failure: {clients.failures[0]}")
        await clients.disconnect_all()


def main() -> None:
    """Run the benchmark and print its figures."""
    arguments = parse_arguments()
    print(f"open files limit: {raise_open_files_limit()}")
    # A vhost and databases of its own, so no running EMS competes for the alerts.
    with isolated(f"bench-alerts-{secrets.token_hex(3)}") as variables:
        os.environ.update(variables)
        settings = load_settings()
        port = free_port()
        notifier = ServiceProcess(python_module("notifier"), name="notifier-bench",
                                  env={"EMS_NOTIFIER_PORT": str(port), "EMS_LOG_LEVEL": "WARNING"})
        with contextlib.ExitStack() as running:
            pipeline = running.enter_context(Pipeline(settings)) if arguments.via == "pipeline" else None
            running.enter_context(notifier)
            wait_for_port(port, process=notifier.process)
            asyncio.run(run(arguments, settings, notifier, f"http://127.0.0.1:{port}", pipeline))


if __name__ == "__main__":
    main()
