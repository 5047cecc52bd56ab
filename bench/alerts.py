"""Benchmark the notifier: alert latency to many sockets, memory per socket, sockets per process.

    .venv/bin/python bench/alerts.py [--clients 2000] [--alerts 1000] [--max-connections 5000]

Starts one notifier (`python -m notifier`) on a free port against a RabbitMQ
virtual host of its own, connects `--clients` Socket.IO clients (each a
different user, so each in its own room), publishes `--alerts` alerts to
`ems.alerts` as the monitor does (each for one random connected user) and
measures the time from publish to the owner's `alert` event. Then it keeps
connecting clients up to `--max-connections` to find how many sockets the one
process holds. Prints figures; asserts nothing (the goals are p99 < 250 ms and
at least 5,000 sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import socketio  # noqa: E402

from common.amqp import ConfirmingPublisher  # noqa: E402
from common.auth import Identity, mint_access_token  # noqa: E402
from common.messages import Alert  # noqa: E402
from common.settings import load_settings  # noqa: E402
from common.topology import ALERTS_EXCHANGE, alert_routing_key  # noqa: E402
from tests.processes import ServiceProcess, free_port, python_module, wait_for_port  # noqa: E402

CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT_SECONDS = 30
DELIVERY_GRACE_SECONDS = 30
GOAL_P99_MS = 250
GOAL_CONNECTIONS = 5000


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000, help="sockets during the latency run")
    parser.add_argument("--alerts", type=int, default=1000, help="alerts to publish")
    parser.add_argument("--rate", type=float, default=200.0, help="alerts published per second")
    parser.add_argument("--max-connections", type=int, default=5000,
                        help="sockets to try to hold at once on the one notifier")
    return parser.parse_args()


def raise_open_files_limit() -> int:
    """Let this process open as many sockets as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=60)


class BenchVirtualHost:
    """A RabbitMQ virtual host of the benchmark's own, so no running EMS competes for alerts."""

    def __enter__(self) -> str:
        self.name = f"ems-bench-{secrets.token_hex(4)}"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self.name

    def __exit__(self, *exc) -> None:
        rabbitmqctl("delete_vhost", self.name)


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
        self.received: dict[int, float] = {}
        self.failures: list[str] = []

    def connected(self) -> int:
        return sum(1 for client in self.sockets.values() if client.connected)

    async def connect_one(self, user_id: int, gate: asyncio.Semaphore) -> None:
        token = mint_access_token(self.settings, Identity(user_id, "client", f"bench {user_id}"))
        client = socketio.AsyncClient(reconnection=False, http_session=self.http)

        @client.on("alert")
        async def on_alert(alert):
            self.received.setdefault(alert["alert_id"], time.perf_counter())

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


def publish_alerts(settings, user_ids: list[int], count: int, rate: float,
                   published: dict[int, float]) -> None:
    """Publish `count` alerts for random users at `rate` per second (runs in a thread)."""
    publisher = ConfirmingPublisher(settings)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    try:
        for alert_id in range(1, count + 1):
            user_id = random.choice(user_ids)
            alert = Alert(alert_id=alert_id, user_id=user_id, device_id=str(uuid.uuid4()),
                          device_name="Bench meter", hour_start="2026-11-26T17:00:00+00:00",
                          kwh=3.1, limit_kwh=2.5)
            published[alert_id] = time.perf_counter()
            publisher.publish(ALERTS_EXCHANGE, alert_routing_key(user_id), alert.to_json())
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
    finally:
        publisher.close()


async def wait_for_deliveries(clients: Clients, expected: int) -> None:
    deadline = time.monotonic() + DELIVERY_GRACE_SECONDS
    while len(clients.received) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(arguments: argparse.Namespace, settings, notifier: ServiceProcess, url: str) -> None:
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
        held = clients.connected()
        rss_loaded = rss_kib(pid)
        per_socket = (rss_loaded - rss_idle) / held if held else float("nan")

        published: dict[int, float] = {}
        await asyncio.to_thread(publish_alerts, settings, list(clients.sockets),
                                arguments.alerts, arguments.rate, published)
        await wait_for_deliveries(clients, arguments.alerts)
        latencies = [(clients.received[i] - published[i]) * 1000
                     for i in published if i in clients.received]

        print(f"alerts: {len(latencies)} of {len(published)} delivered to their owner")
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
    with BenchVirtualHost() as vhost:
        os.environ["EMS_AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"
        settings = load_settings()
        port = free_port()
        notifier = ServiceProcess(python_module("notifier"), name="notifier-bench",
                                  env={"EMS_NOTIFIER_PORT": str(port), "EMS_LOG_LEVEL": "WARNING"})
        with notifier:
            wait_for_port(port, process=notifier.process)
            asyncio.run(run(arguments, settings, notifier, f"http://127.0.0.1:{port}"))


if __name__ == "__main__":
    main()
