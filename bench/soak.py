"""Soak the whole system: steady load, poison messages and killed workers for many minutes.

    .venv/bin/python bench/soak.py [--minutes 10] [--devices 1000] [--sockets 2000] [--rate 1000]
                                   [--sockets-per-client N] [--chat-rate 20]
                                   [--poison-every 10] [--kill-every 60]

Starts every Procfile process but the simulator behind the Caddy gateway, in a
RabbitMQ vhost and database prefix of its own. Creates one client per 10
devices in the portal's database with their `user.created`/`device.created`
outbox events, and waits until the monitor has learnt every device through the
outbox relay. Device limits are spread so that about half the device-hours go
over their limit at different moments of the run, which keeps alerts flowing.

For `--minutes` it then, all at once:
- publishes `--rate` readings/s (one per device per second by default),
  stamped now, with publisher confirms (the simulator's burst publisher);
- holds `--sockets` Socket.IO connections through the gateway, logged in as
  the clients (`--sockets-per-client` each), and records every alert they get;
- sends `--chat-rate` chat messages/s from random client sockets;
- publishes a poison message every `--poison-every` s to a random EMS queue
  (bad JSON, bytes that are not UTF-8, huge numbers, deep nesting, lone surrogates);
- `kill -9`s a random worker every `--kill-every` s and starts it again at once;
  a worker that exits by itself is restarted too, and counted apart.

At the end it stops publishing, waits (bounded) for the queues to drain and
prints readings sent, stored, dead-lettered by reason, lost (must be 0),
double-counted device-hours (must be 0), alerts raised vs received and their
latency, chat sent vs stored, and each process's memory after the warm-up and
at the end. Exits 1 if a reading was lost or a device-hour counted wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import pymysql  # noqa: E402
import socketio  # noqa: E402
from pika.exceptions import AMQPError  # noqa: E402

from bench.measure import (  # noqa: E402
    freeze_simulated_clients,
    percentile,
    process_tree_rss_kib,
    raise_open_files_limit,
)
from common.amqp import (  # noqa: E402
    CONNECTION_ERRORS,
    ConfirmingPublisher,
    PublishNotConfirmed,
    connect,
    take_all,
)
from common.auth import Identity, mint_access_token  # noqa: E402
from common.messages import Reading  # noqa: E402
from common.settings import load_settings  # noqa: E402
from common.topology import (  # noqa: E402
    CHAT_EXCHANGE,
    CHAT_MESSAGE_KEY,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    DEAD_LETTERS_QUEUE,
    EVENTS_EXCHANGE,
    INGEST_EXCHANGE,
    MONITOR_EVENTS_QUEUE,
    NOTIFIER_ALERTS_QUEUE,
    READING_ROUTING_KEY,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    SUPPORT_INBOUND_QUEUE,
    ingest_queue,
    ingest_routing_key,
)
from migrations.runner import upgrade  # noqa: E402
from simulator.modes import now_ms  # noqa: E402
from simulator.publisher import ConfirmedBurstPublisher  # noqa: E402
from tests.isolation import isolated  # noqa: E402
from tests.processes import ServiceProcess, free_port, procfile_commands, wait_for_port  # noqa: E402

DEVICES_PER_CLIENT = 10
# A second's consumption of a 3.6 kW household: each reading covers one second here.
KWH_PER_READING = 0.001
# Limits run from 10% to 200% of what a device consumes in the run: about half
# the devices cross theirs, each at its own moment.
LIMIT_SPREAD = (0.1, 2.0)
LIMIT_STEP_KWH = 0.001
# The workers a supervisor restarts; the HTTP services and the gateway stay up.
WORKERS = ("balancer", "monitor_1", "monitor_2", "monitor_3", "monitor_events",
           "support_consumer", "outbox_relay")
WORK_QUEUES = (READINGS_QUEUE, *(ingest_queue(n) for n in (1, 2, 3)), MONITOR_EVENTS_QUEUE,
               SUPPORT_INBOUND_QUEUE, NOTIFIER_ALERTS_QUEUE)
CONNECT_CONCURRENCY = 50
CONNECT_TIMEOUT_SECONDS = 30
DEVICES_KNOWN_TIMEOUT_SECONDS = 120
ALERT_GRACE_SECONDS = 30
PROGRESS_EVERY_SECONDS = 15
MAX_WARM_UP_SECONDS = 60
# A worker that keeps dying is restarted after a pause, as systemd's RestartSec does.
CRASH_LOOP_WINDOW_SECONDS = 10
CRASH_LOOP_PAUSE_SECONDS = 5
CHAT_LINES = ("hi", "How much did I use today?", "My meter shows too much, why?", "thanks", "hello there")


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs")
    parser.add_argument("--devices", type=int, default=1000, help=f"{DEVICES_PER_CLIENT} per client")
    parser.add_argument("--sockets", type=int, default=2000, help="Socket.IO connections held")
    parser.add_argument("--sockets-per-client", type=int, default=0,
                        help="sockets of one client (default: --sockets spread over the clients)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="readings per second (default: one per device per second)")
    parser.add_argument("--chat-rate", type=float, default=20.0, help="chat messages per second")
    parser.add_argument("--poison-every", type=float, default=10.0, help="seconds between poison messages")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kill -9 of a worker")
    parser.add_argument("--drain-timeout", type=float, default=120.0,
                        help="seconds to wait for the queues to empty at the end")
    arguments = parser.parse_args()
    arguments.clients = math.ceil(arguments.devices / DEVICES_PER_CLIENT)
    arguments.rate = arguments.rate or float(arguments.devices)
    if not arguments.sockets_per_client:
        arguments.sockets_per_client = max(1, round(arguments.sockets / arguments.clients))
    return arguments


def elapsed_label(started: float) -> str:
    """Return the time since `started` as m:ss."""
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}:{seconds % 60:02d}"


# --- the fleet: clients and devices, created as the portal does -------------------------------


@dataclass
class Fleet:
    """The benchmark's clients and their devices."""

    owners: dict[str, int]            # device id -> client user id
    limits: dict[str, float]          # device id -> hourly limit in kWh

    @property
    def clients(self) -> list[int]:
        return sorted(set(self.owners.values()))


def device_limits(count: int, expected_kwh: float) -> list[float]:
    """Return `count` limits spread evenly over LIMIT_SPREAD times the run's expected kWh."""
    low, high = LIMIT_SPREAD
    steps = max(count - 1, 1)
    return [max(LIMIT_STEP_KWH, round(expected_kwh * (low + (high - low) * n / steps), 3))
            for n in range(count)]


def create_fleet(settings, clients: int, devices: int, expected_kwh: float) -> Fleet:
    """Create the clients and devices in the portal's database, each with its outbox event."""
    from web import create_app
    from web.extensions import db
    from web.models import ROLE_CLIENT, Device, User
    from web.outbox import record_event

    app = create_app(settings)
    with app.app_context():
        # Nobody logs in with a password here (sockets get minted tokens): one hash does.
        password_hash = app.extensions["ems_password_hasher"].hash(secrets.token_urlsafe(16))
        users = []
        for n in range(clients):
            user = User(email=f"soak-{n}@bench.local", name=f"Soak client {n}", role=ROLE_CLIENT,
                        password_hash=password_hash)
            db.session.add(user)
            db.session.flush()
            record_event("user.created", user=user)
            users.append(user)
        owners, limits = {}, {}
        for n, limit in enumerate(device_limits(devices, expected_kwh)):
            # Neighbouring limits go to different clients, so every client gets alerts.
            owner = users[n % clients]
            device = Device(name=f"Soak meter {n}", description="", address="",
                            max_hourly_kwh=limit, owner_id=owner.id)
            db.session.add(device)
            db.session.flush()
            record_event("device.created", device=device)
            owners[device.id], limits[device.id] = owner.id, limit
        db.session.commit()
    return Fleet(owners, limits)


def database(settings, service: str) -> pymysql.Connection:
    """Open an autocommit connection to a service's database, in UTC."""
    connection = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                                 password=settings.db_password, database=settings.database_name(service),
                                 autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
    return connection


def query(settings, service: str, statement: str, parameters=None) -> list[tuple]:
    """Run one statement on a service's database and return its rows."""
    connection = database(settings, service)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, parameters)
            return list(cursor.fetchall())
    finally:
        connection.close()


def wait_until_monitor_knows(settings, fleet: Fleet) -> float:
    """Wait until the monitor has every device (from the relay's events); return the seconds."""
    started = time.monotonic()
    while time.monotonic() - started < DEVICES_KNOWN_TIMEOUT_SECONDS:
        known = query(settings, "monitor", "SELECT COUNT(*) FROM devices")[0][0]
        if known >= len(fleet.owners):
            return time.monotonic() - started
        time.sleep(1)
    raise TimeoutError(f"the monitor knows {known} of {len(fleet.owners)} devices after "
                       f"{DEVICES_KNOWN_TIMEOUT_SECONDS} s: is the outbox relay or monitor_events down?")


# --- the processes and their supervisor ---------------------------------------------------------


@dataclass
class Exit:
    """A process that ended without being killed by the benchmark."""

    at: str
    name: str
    returncode: int
    last_lines: str


class Supervisor:
    """Run the Procfile processes; kill workers on purpose, restart whatever ends."""

    def __init__(self, env: dict):
        commands = procfile_commands()
        self.processes = {
            # Names of their own keep these logs apart from the test suite's stack.
            name: ServiceProcess(["bash", "-c", "exec " + command], env=env, name=f"soak-{name}")
            for name, command in commands.items() if name != "simulator"
        }
        self.kills: Counter[str] = Counter()
        self.exits: list[Exit] = []
        self.restarts: Counter[str] = Counter()
        self._last_exit: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self, ports: list[int]) -> None:
        """Start every process and wait until each HTTP port answers."""
        for process in self.processes.values():
            process.log_path.unlink(missing_ok=True)
            process.start()
        for port in ports:
            wait_for_port(port, 60)
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching, then stop every process."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for process in self.processes.values():
            process.stop()

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL a worker's process group and start it again at once, as a supervisor would."""
        with self._lock:
            process = self.processes[name]
            process.kill()
            process.start()
            self.kills[name] += 1
            self.restarts[name] += 1

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                for name, process in self.processes.items():
                    if process.running or self._stop.is_set():
                        continue
                    now = time.monotonic()
                    if name not in self._paused_until:
                        self._record_exit(name, process, now)
                        crash_loop = now - self._last_exit.get(name, -math.inf) < CRASH_LOOP_WINDOW_SECONDS
                        self._last_exit[name] = now
                        if crash_loop:
                            self._paused_until[name] = now + CRASH_LOOP_PAUSE_SECONDS
                            continue
                    elif now < self._paused_until[name]:
                        continue
                    self._paused_until.pop(name, None)
                    process.start()
                    self.restarts[name] += 1

    def _record_exit(self, name: str, process: ServiceProcess, now: float) -> None:
        lines = [line for line in process.log().splitlines() if line.strip()][-3:]
        seconds = int(now - self._started)
        self.exits.append(Exit(f"{seconds // 60}:{seconds % 60:02d}", name,
                               process.process.returncode, "\n      ".join(lines)))
        print(f"  ! {name} exited by itself with {process.process.returncode}; restarting it", flush=True)

    def memory(self) -> dict[str, int]:
        """Return each process's resident memory (with its children) in KiB."""
        with self._lock:
            return {name: process_tree_rss_kib(process.process.pid) if process.running else 0
                    for name, process in self.processes.items()}

    def tracebacks(self) -> dict[str, int]:
        """Return how many Python tracebacks each process has logged."""
        return {name: process.log().count("Traceback (most recent call last)")
                for name, process in self.processes.items()}


# --- load: readings, poison messages -----------------------------------------------------------


def live_readings(device_ids: list[str], stop: threading.Event):
    """Yield one reading per device in turn, stamped now, until `stop` is set.

    A reading is identified by device and millisecond: a device's stamps only
    ever go up, so no two of its readings share a key.
    """
    last = dict.fromkeys(device_ids, 0)
    while True:
        for device_id in device_ids:
            if stop.is_set():
                return
            stamp = max(now_ms(), last[device_id] + 1)
            last[device_id] = stamp
            yield Reading(stamp, device_id, KWH_PER_READING).to_json()


class ReadingLoad:
    """The simulator's burst publisher at a fixed rate, in a thread of its own."""

    def __init__(self, settings, device_ids: list[str], rate: float):
        self.publisher = ConfirmedBurstPublisher(settings, READINGS_EXCHANGE, READING_ROUTING_KEY, rate=rate)
        self.stop_event = threading.Event()
        self.error = ""
        self._thread = threading.Thread(target=self._run, args=(device_ids,), name="readings", daemon=True)

    def _run(self, device_ids: list[str]) -> None:
        try:
            self.publisher.publish_all(live_readings(device_ids, self.stop_event))
        except (ConnectionError, AMQPError) as error:
            self.error = repr(error)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop taking new readings and wait until every one sent is confirmed."""
        self.stop_event.set()
        self._thread.join(120)

    @property
    def confirmed(self) -> int:
        return self.publisher.summary.confirmed


LONE_SURROGATE = "\\ud800"
HUGE_INTEGER = "1" + "0" * 400
# Deeper than Python's recursion limit, yet under the 4 KiB a reading may weigh.
NESTING_DEPTH = 2000


def poison_body(shape: str, kind: str) -> bytes:
    """Return a poison message of `kind` shaped like what the queue's consumer expects.

    Identifiers are fresh ones that belong to nobody, so whatever gets through
    never touches the fleet's figures.
    """
    if kind == "bad-json":
        return b'{"timestamp": 1732611600000, "device_id": "0b6d5c7e-'
    if kind == "not-utf8":
        return b'{"body": "\xff\xfe\xfa\xc3\x28"}'
    if kind == "deep-nesting":
        return b'{"a":' + b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH + b"}"
    device_id = str(uuid.uuid4())
    stamp = now_ms()
    at = datetime.now(UTC).isoformat()
    if shape == "reading":
        if kind == "huge-numbers":
            text = f'{{"timestamp":{HUGE_INTEGER},"device_id":"{device_id}","measurement_value":1e400}}'
        else:
            text = (f'{{"timestamp":{stamp},"device_id":"{device_id[:-1]}{LONE_SURROGATE}",'
                    '"measurement_value":0.1}')
    elif shape == "event":
        name = "Poison meter" if kind == "huge-numbers" else f"Poison {LONE_SURROGATE} meter"
        owner, limit = (HUGE_INTEGER, "1e400") if kind == "huge-numbers" else ("null", "1.5")
        sequence = HUGE_INTEGER if kind == "huge-numbers" else str(stamp)
        text = (f'{{"sequence":{sequence},"type":"device.created","occurred_at":"{at}",'
                f'"device":{{"id":"{device_id}","name":"{name}","owner_id":{owner},'
                f'"max_hourly_kwh":{limit}}}}}')
    else:
        sender = HUGE_INTEGER if kind == "huge-numbers" else str(900_000_000 + random.randrange(1000))
        body = "hi" if kind == "huge-numbers" else f"hello {LONE_SURROGATE}{LONE_SURROGATE}"
        text = (f'{{"sender":{{"id":{sender},"role":"client","name":"poison"}},'
                f'"payload":{{"client_message_id":"{uuid.uuid4().hex}","body":"{body}"}},'
                f'"received_at":"{at}"}}')
    return text.encode()


POISON_KINDS = ("bad-json", "not-utf8", "huge-numbers", "deep-nesting", "surrogates")
# queue -> (exchange, routing key, message shape): the way real messages reach it.
POISON_TARGETS = {
    READINGS_QUEUE: (READINGS_EXCHANGE, READING_ROUTING_KEY, "reading"),
    **{ingest_queue(n): (INGEST_EXCHANGE, ingest_routing_key(n), "reading") for n in (1, 2, 3)},
    MONITOR_EVENTS_QUEUE: (EVENTS_EXCHANGE, "device.created", "event"),
    SUPPORT_INBOUND_QUEUE: (CHAT_EXCHANGE, CHAT_MESSAGE_KEY, "chat"),
}


def publish_poison(settings, queue: str, kind: str) -> None:
    """Publish one poison message to `queue` the way its real messages arrive."""
    exchange, routing_key, shape = POISON_TARGETS[queue]
    with contextlib.closing(ConfirmingPublisher(settings, declare=False)) as publisher:
        publisher.publish(exchange, routing_key, poison_body(shape, kind))


# --- sockets and chat ---------------------------------------------------------------------------


@dataclass
class SocketLoad:
    """The clients' Socket.IO connections: alerts they receive, chat they send."""

    url: str
    settings: object
    http: aiohttp.ClientSession
    token_lifetime: timedelta
    sockets: dict[int, list[socketio.AsyncClient]] = field(default_factory=dict)
    first_alert: dict[int, float] = field(default_factory=dict)     # alert id -> first arrival
    alert_arrivals: dict[int, list[float]] = field(default_factory=dict)
    alert_deliveries: set[tuple[int, int]] = field(default_factory=set)  # (alert id, socket)
    chat_sent: dict[str, float] = field(default_factory=dict)        # client message id -> sent
    chat_answers: Counter = field(default_factory=Counter)
    chat_answer_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    disconnects: int = 0
    held_at_end: int = 0

    def connected(self) -> int:
        return sum(1 for sockets in self.sockets.values() for s in sockets if s.connected)

    async def connect(self, user_id: int, gate: asyncio.Semaphore) -> None:
        token = mint_access_token(self.settings, Identity(user_id, "client", f"Soak client {user_id}"),
                                  self.token_lifetime)
        client = socketio.AsyncClient(reconnection=False, http_session=self.http)

        @client.on("alert")
        async def on_alert(alert):
            now = time.time()
            self.first_alert.setdefault(alert["alert_id"], now)
            self.alert_arrivals.setdefault(alert["alert_id"], []).append(now)
            self.alert_deliveries.add((alert["alert_id"], id(client)))

        @client.on("disconnect")
        async def on_disconnect(*_reason):
            self.disconnects += 1

        async with gate:
            try:
                await client.connect(self.url, transports=["websocket"], auth={"token": token},
                                     wait_timeout=CONNECT_TIMEOUT_SECONDS)
                self.sockets.setdefault(user_id, []).append(client)
            except (TimeoutError, socketio.exceptions.ConnectionError, OSError) as error:
                self.failures.append(f"{type(error).__name__}: {error}")

    async def connect_all(self, clients: list[int], per_client: int) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        await asyncio.gather(*(self.connect(user_id, gate) for _ in range(per_client) for user_id in clients))

    def _chat_answered(self, client_message_id: str):
        def on_answer(answer=None) -> None:
            """Count the notifier's answer to one chat message and how long it took."""
            self.chat_answer_ms.append((time.perf_counter() - self.chat_sent[client_message_id]) * 1000)
            ok = isinstance(answer, dict) and answer.get("ok")
            self.chat_answers["ok" if ok else str((answer or {}).get("error", answer))[:60]] += 1
        return on_answer

    async def send_chat(self) -> None:
        """Send one chat message from a random connected socket of a random client."""
        live = [s for sockets in self.sockets.values() for s in sockets[:1] if s.connected]
        if not live:
            return
        client_message_id = uuid.uuid4().hex
        self.chat_sent[client_message_id] = time.perf_counter()
        with contextlib.suppress(socketio.exceptions.BadNamespaceError):
            await random.choice(live).emit("chat:send", {"client_message_id": client_message_id,
                                                         "body": random.choice(CHAT_LINES)},
                                           callback=self._chat_answered(client_message_id))

    async def disconnect_all(self) -> None:
        await asyncio.gather(*(s.disconnect() for sockets in self.sockets.values() for s in sockets),
                             return_exceptions=True)


# --- the broker: queue depths, dead letters ------------------------------------------------------


def vhost_of(settings) -> str:
    return unquote(urlparse(settings.amqp_url).path.lstrip("/")) or "/"


def queue_depths(settings) -> dict[str, int]:
    """Return each queue's messages, ready and unacknowledged (rabbitmqctl)."""
    command = ["rabbitmqctl", "-q", "list_queues", "-p", vhost_of(settings), "name", "messages"]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout
    depths = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            depths[parts[0]] = int(parts[1])
    return depths


def ready_depths(settings) -> dict[str, int]:
    """Return the ready messages of the work queues (cheap: passive declares)."""
    connection = connect(settings, declare=False)
    try:
        channel = connection.channel()
        return {queue: channel.queue_declare(queue, passive=True).method.message_count
                for queue in WORK_QUEUES}
    finally:
        connection.close()


def reason_prefix(reason: str) -> str:
    """Return the gist of a dead-letter reason: quoted values and numbers blanked, up to a colon."""
    gist = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "…", reason)
    return gist.split(":")[0].strip()[:70]


def drain_dead_letters(settings) -> Counter:
    """Take every message from dead.letters; return counts by (source queue, reason gist)."""
    reasons: Counter = Counter()
    connection = connect(settings, declare=False)
    try:
        for _method, properties, _body in take_all(connection.channel(), DEAD_LETTERS_QUEUE):
            headers = properties.headers or {}
            reason = headers.get(DEAD_LETTER_REASON_HEADER)
            source = headers.get(DEAD_LETTER_SOURCE_HEADER)
            if reason is None and headers.get("x-death"):
                # Dead-lettered by the broker itself (a reject without requeue, a length limit).
                death = headers["x-death"][0]
                reason, source = f"broker: {death.get('reason')}", death.get("queue")
            reasons[(_text(source), reason_prefix(_text(reason or "no reason header")))] += 1
    finally:
        connection.close()
    return reasons


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --- figures at the end ---------------------------------------------------------------------------


def stored_readings(settings, fleet: Fleet) -> tuple[int, int]:
    """Return the stored readings of the fleet's devices, and of any other device."""
    rows = query(settings, "monitor", "SELECT device_id, COUNT(*) FROM readings GROUP BY device_id")
    ours = sum(count for device_id, count in rows if device_id in fleet.owners)
    return ours, sum(count for _, count in rows) - ours


# Cheap while the load runs: each replica counts what it stored.
STORED_SO_FAR = "SELECT COALESCE(SUM(readings_stored), 0) FROM replica_stats"
# Readings keep only their timestamp: their clock hour is computed here, free of any time zone.
READINGS_BY_HOUR = """
    SELECT device_id, TIMESTAMPADD(HOUR, timestamp_ms DIV 3600000, '1970-01-01') AS hour_start,
           SUM(kwh) AS total
    FROM readings GROUP BY device_id, hour_start
"""
WRONG_DEVICE_HOURS = f"""
SELECT COUNT(*) FROM (
    SELECT h.device_id FROM hourly_consumption h
    LEFT JOIN ({READINGS_BY_HOUR}) r ON r.device_id = h.device_id AND r.hour_start = h.hour_start
    WHERE r.total IS NULL OR r.total <> h.kwh
    UNION ALL
    SELECT r.device_id FROM ({READINGS_BY_HOUR}) r
    LEFT JOIN hourly_consumption h ON h.device_id = r.device_id AND h.hour_start = r.hour_start
    WHERE h.device_id IS NULL
) AS wrong
"""  # noqa: S608 - built from constant text only


def raised_alerts(settings, fleet: Fleet) -> dict[int, tuple[str, float, bool]]:
    """Return the fleet's alerts: id -> (device id, when raised as epoch seconds, published)."""
    rows = query(settings, "monitor", "SELECT id, device_id, UNIX_TIMESTAMP(created_at), "
                 "published_at IS NOT NULL FROM alerts")
    return {alert_id: (device_id, float(raised), bool(published))
            for alert_id, device_id, raised, published in rows if device_id in fleet.owners}


def stored_chat(settings, sent: set[str]) -> int:
    """Return how many of the sent chat messages support has stored."""
    rows = query(settings, "support", "SELECT client_message_id FROM messages WHERE sender_role = 'client'")
    return sum(1 for (client_message_id,) in rows if client_message_id in sent)


def print_memory(start: dict[str, int], end: dict[str, int], restarts: Counter, tracebacks: dict) -> None:
    """Print each process's memory after the warm-up and at the end."""
    print(f"{'process':<18}{'RSS start':>11}{'RSS end':>11}{'growth':>9}  notes")
    for name in start:
        before, after = start[name] / 1024, end.get(name, 0) / 1024
        notes = []
        if restarts[name]:
            notes.append(f"restarted {restarts[name]}x: end is a new life")
        if tracebacks.get(name):
            notes.append(f"{tracebacks[name]} tracebacks in its log")
        growth = f"{(after - before) / before * 100:+.1f}%" if before and not restarts[name] else "—"
        print(f"{name:<18}{before:>9.1f}Mi{after:>9.1f}Mi{growth:>9}  {'; '.join(notes)}")


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the load loops did."""

    poisons: Counter = field(default_factory=Counter)
    poison_failures: list[str] = field(default_factory=list)
    memory_start: dict[str, int] = field(default_factory=dict)


async def every(seconds: float, until: float, action) -> None:
    """Run `action` every `seconds` until the monotonic time `until`."""
    next_at = time.monotonic() + seconds
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await action()
        next_at += seconds


async def soak(arguments, settings, supervisor: Supervisor, fleet: Fleet, url: str) -> int:
    """Run the load for the set minutes, drain, print the figures; return the exit status."""
    duration = arguments.minutes * 60
    warm_up = min(MAX_WARM_UP_SECONDS, duration / 4)
    tally = Tally()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = SocketLoad(url, settings, http, timedelta(seconds=duration + 3600))
        started = time.monotonic()
        await sockets.connect_all(fleet.clients, arguments.sockets_per_client)
        print(f"connected {sockets.connected()} of {len(fleet.clients) * arguments.sockets_per_client} "
              f"sockets ({len(fleet.clients)} clients x {arguments.sockets_per_client}) in "
              f"{time.monotonic() - started:.1f} s; {len(sockets.failures)} failed", flush=True)
        if sockets.failures:
            print(f"  first failure: {sockets.failures[0]}")
        freeze_simulated_clients()

        readings = ReadingLoad(settings, list(fleet.owners), arguments.rate)
        started = time.monotonic()
        until = started + duration
        readings.start()

        # Every queue meets every kind of poison once before any pair comes again.
        poisons = [(queue, kind) for queue in POISON_TARGETS for kind in POISON_KINDS]
        random.shuffle(poisons)
        upcoming = itertools.cycle(poisons)

        async def poison():
            queue, kind = next(upcoming)
            try:
                await asyncio.to_thread(publish_poison, settings, queue, kind)
                tally.poisons[(queue, kind)] += 1
            except (PublishNotConfirmed, *CONNECTION_ERRORS) as error:
                tally.poison_failures.append(f"{queue} {kind}: {error!r}")

        async def kill():
            name = random.choice(WORKERS)
            print(f"[{elapsed_label(started)}] kill -9 {name}, restarted at once", flush=True)
            await asyncio.to_thread(supervisor.kill_and_restart, name)

        async def warm_up_memory():
            await asyncio.sleep(warm_up)
            tally.memory_start = await asyncio.to_thread(supervisor.memory)
            print(f"[{elapsed_label(started)}] warm-up over: memory noted", flush=True)

        async def progress():
            try:
                depths = await asyncio.to_thread(ready_depths, settings)
                stored = await asyncio.to_thread(query, settings, "monitor", STORED_SO_FAR)
            except (AMQPError, pymysql.MySQLError, OSError) as error:
                print(f"[{elapsed_label(started)}] progress unavailable: {error!r}", flush=True)
                return
            backlog = ", ".join(f"{queue} {n}" for queue, n in depths.items() if n) or "none"
            print(f"[{elapsed_label(started)}] readings confirmed {readings.confirmed:,}, stored "
                  f"{int(stored[0][0]):,}; sockets {sockets.connected()}; alerts received "
                  f"{len(sockets.first_alert)}; chat sent {len(sockets.chat_sent)}; poisons "
                  f"{sum(tally.poisons.values())}; kills {sum(supervisor.kills.values())}, "
                  f"exits {len(supervisor.exits)}; ready in queues: {backlog}", flush=True)

        await asyncio.gather(
            every(1 / arguments.chat_rate, until, sockets.send_chat),
            every(arguments.poison_every, until, poison),
            every(arguments.kill_every, until, kill),
            warm_up_memory(),
            every(PROGRESS_EVERY_SECONDS, until, progress),
        )
        print(f"[{elapsed_label(started)}] load over: waiting for the last confirms and the queues",
              flush=True)
        await asyncio.to_thread(readings.stop)
        seconds = time.monotonic() - started
        depths = await drain(settings, arguments.drain_timeout, started)
        alerts = await wait_for_alerts(settings, fleet, sockets)
        memory_end = await asyncio.to_thread(supervisor.memory)
        dead = await asyncio.to_thread(drain_dead_letters, settings)
        sockets.held_at_end, dropped = sockets.connected(), sockets.disconnects
        await sockets.disconnect_all()

    sockets.disconnects = dropped  # not the ones this benchmark closed itself
    return report(arguments, settings, fleet, supervisor, readings, seconds, depths, alerts, sockets,
                  tally, memory_end, dead, warm_up)


async def drain(settings, timeout: float, started: float) -> dict[str, int]:
    """Wait until the work queues are empty (or `timeout`); return what is left in them."""
    deadline = time.monotonic() + timeout
    while True:
        depths = await asyncio.to_thread(queue_depths, settings)
        left = {queue: depths.get(queue, 0) for queue in WORK_QUEUES if depths.get(queue, 0)}
        if not left or time.monotonic() > deadline:
            print(f"[{elapsed_label(started)}] queues {'drained' if not left else f'still hold {left}'}",
                  flush=True)
            return left
        await asyncio.sleep(2)


async def wait_for_alerts(settings, fleet: Fleet, sockets: SocketLoad) -> dict:
    """Wait (bounded) until every raised alert is published and reached a socket; return them."""
    deadline = time.monotonic() + ALERT_GRACE_SECONDS
    while True:
        alerts = await asyncio.to_thread(raised_alerts, settings, fleet)
        if all(alert_id in sockets.first_alert for alert_id in alerts) or time.monotonic() > deadline:
            return alerts
        await asyncio.sleep(1)


def report(arguments, settings, fleet, supervisor, readings, seconds, depths, alerts, sockets,
           tally, memory_end, dead, warm_up) -> int:
    """Print the figures; return 1 if a reading was lost or a device-hour counted wrongly."""
    sent = readings.confirmed
    stored, strangers = stored_readings(settings, fleet)
    lost = sent - stored
    wrong_hours = query(settings, "monitor", WRONG_DEVICE_HOURS)[0][0]
    print()
    print(f"=== soak: {seconds / 60:.1f} min, {len(fleet.owners)} devices, {len(fleet.clients)} clients, "
          f"{arguments.sockets_per_client} sockets per client, {arguments.rate:g} readings/s ===")
    print(f"readings sent (confirmed): {sent:,} ({sent / seconds:,.0f}/s)"
          + (f"; the publisher failed: {readings.error}" if readings.error else ""))
    print(f"readings stored: {stored:,} (+ {strangers} of devices that are not the fleet's)")
    print(f"LOST (sent - stored): {lost:,}   (must be 0)")
    print(f"DOUBLE-COUNTED device-hours (hourly total != sum of its readings): {wrong_hours}   (must be 0)")
    if depths:
        print(f"left in queues after {arguments.drain_timeout:g} s of draining: {depths}")

    print(f"poison messages published: {sum(tally.poisons.values())} "
          f"({len(tally.poison_failures)} could not be published)")
    for (queue, kind), count in sorted(tally.poisons.items()):
        print(f"  {queue:<18} {kind:<14} {count}")
    print(f"dead-lettered: {sum(dead.values())}")
    for (source, reason), count in sorted(dead.items()):
        print(f"  {source:<18} {count:>5}  {reason}")

    received = [alert_id for alert_id in alerts if alert_id in sockets.first_alert]
    unpublished = sum(1 for _, _, published in alerts.values() if not published)
    deliveries = sum(len(arrivals) for arrivals in sockets.alert_arrivals.values())
    print(f"alerts raised: {len(alerts)} ({unpublished} not published); received by a socket: "
          f"{len(received)}; deliveries to sockets: {deliveries} "
          f"({deliveries - len(sockets.alert_deliveries)} repeated to the same socket)")
    first = [(sockets.first_alert[a] - alerts[a][1]) * 1000 for a in received]
    every_socket = [(t - alerts[a][1]) * 1000 for a in received for t in sockets.alert_arrivals[a]]
    if first:
        print(f"alert latency raised -> first socket: p50 {statistics.median(first):.0f} ms, "
              f"p99 {percentile(first, 0.99):.0f} ms; -> every socket: p99 "
              f"{percentile(every_socket, 0.99):.0f} ms, max {max(every_socket):.0f} ms")
    print(f"sockets: {sockets.held_at_end} still connected at the end, "
          f"{sockets.disconnects} dropped during the run")

    chat_stored = stored_chat(settings, sockets.chat_sent)
    answers = ", ".join(f"{answer} {count}" for answer, count in sockets.chat_answers.most_common())
    print(f"chat sent: {len(sockets.chat_sent)}; stored: {chat_stored}; the notifier answered: "
          f"{answers or 'nothing'}")
    if sockets.chat_answer_ms:
        print(f"chat send -> notifier's answer: p50 {statistics.median(sockets.chat_answer_ms):.0f} ms, "
              f"p99 {percentile(sockets.chat_answer_ms, 0.99):.0f} ms")

    print(f"kill -9 (planned): {sum(supervisor.kills.values())} "
          f"({', '.join(f'{n} {c}' for n, c in supervisor.kills.most_common()) or 'none'})")
    print(f"unexpected exits: {len(supervisor.exits)}")
    for exit_ in supervisor.exits[:10]:
        print(f"  [{exit_.at}] {exit_.name} code {exit_.returncode}:\n      {exit_.last_lines}")
    print(f"memory after the {warm_up:.0f} s warm-up and at the end (with child processes):")
    print_memory(tally.memory_start, memory_end, supervisor.restarts, supervisor.tracebacks())
    print(f"process logs: {supervisor.processes['web'].log_path.parent}/soak-*.log")
    return 1 if lost > 0 or wrong_hours > 0 else 0


def main() -> None:
    """Start the system, run the soak, print the figures; exit 1 if anything was lost."""
    arguments = parse_arguments()
    raise_open_files_limit()  # the gateway and the notifier inherit it
    ports = {f"EMS_{name}_PORT": str(free_port())
             for name in ("GATEWAY", "WEB", "SUPPORT", "NOTIFIER", "MONITOR_API")}
    # The notifier caps each user's sockets (EMS_SOCKETS_PER_USER): a deployment sized
    # for this many tabs per client raises the cap, so the soak does too.
    cap = max(arguments.sockets_per_client, load_settings().sockets_per_user)
    extra = {**ports, "EMS_LOG_LEVEL": "WARNING", "EMS_LLM_BASE_URL": "", "EMS_LLM_MODEL": "",
             "EMS_JWT_SECRET": "soak-" + secrets.token_hex(16), "EMS_SOCKETS_PER_USER": str(cap)}
    with isolated(f"bench-soak-{secrets.token_hex(3)}", extra) as variables:
        os.environ.update(variables)
        settings = load_settings()
        upgrade(settings)
        connect(settings).close()  # the topology, before any consumer or poison needs it
        expected_kwh = KWH_PER_READING * arguments.rate / arguments.devices * arguments.minutes * 60
        started = time.monotonic()
        fleet = create_fleet(settings, arguments.clients, arguments.devices, expected_kwh)
        print(f"sockets per client: {arguments.sockets_per_client} (the notifier's cap per user: "
              f"{settings.sockets_per_user})")
        print(f"created {arguments.clients} clients and {arguments.devices} devices in "
              f"{time.monotonic() - started:.1f} s (limits {min(fleet.limits.values()):g}–"
              f"{max(fleet.limits.values()):g} kWh; {expected_kwh:.3f} kWh per device in the run)",
              flush=True)
        supervisor = Supervisor({**variables, "EMS_PUBLIC_URL": settings.public_url})
        try:
            supervisor.start([int(port) for port in ports.values()])
            print(f"the monitor learnt every device in {wait_until_monitor_knows(settings, fleet):.1f} s "
                  "(outbox relay -> monitor events)", flush=True)
            status = asyncio.run(soak(arguments, settings, supervisor, fleet,
                                      f"http://localhost:{ports['EMS_GATEWAY_PORT']}"))
        finally:
            supervisor.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
