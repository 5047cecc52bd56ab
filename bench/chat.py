"""Benchmark the support chat: client → admin latency and bot answer latency under load.

    .venv/bin/python bench/chat.py [--clients 500] [--admins 5] [--rate 200] [--seconds 15]

Starts a notifier (`python -m notifier`) and the support consumer (`python -m
support consumer`) against a RabbitMQ virtual host and a support database of
the benchmark's own. Connects `--clients` client sockets and `--admins` admin
sockets. Half the clients first ask for a human (their conversations wait for
an administrator); the other half stay with the bot. Then messages are sent at
`--rate` per second from random clients: a message of a waiting client is timed
from `chat:send` to the first administrator's `chat:message`, a message of a bot
client ("hi") from `chat:send` to the bot's answer at the client. Prints
p50/p99; asserts nothing (goal: p99 < 100 ms here, so that it stays under 150 ms
on a noisier machine). `--runs 5` repeats the measurement (fresh processes each
time); `--timeline 10` prints where the slowest messages to the admin spent their
time: from the send to the moment the consumer posted the message (its
`created_at`, the notifier and the broker's queue included), then to the admin
(write, commit, emit, the Socket.IO queue, the notifier).

With `--direct N` it measures the support consumer alone instead: N client
messages ("hi", 100 clients) published straight to `ems.chat` as the notifier
would, and how fast they and their bot answers are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import socketio  # noqa: E402

from bench.measure import freeze_simulated_clients, percentile, raise_open_files_limit  # noqa: E402
from common.auth import Identity, mint_access_token  # noqa: E402
from common.settings import load_settings  # noqa: E402
from migrations.runner import upgrade  # noqa: E402
from tests.isolation import isolated  # noqa: E402
from tests.processes import ServiceProcess, free_port, python_module, wait_for_port  # noqa: E402

CONNECT_CONCURRENCY = 50
SETTLE_TIMEOUT_SECONDS = 60
DELIVERY_GRACE_SECONDS = 20
GOAL_P99_MS = 100
FIRST_USER_ID = 2_000_000


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--admins", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0, help="client messages per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to send at that rate")
    parser.add_argument("--runs", type=int, default=1, help="measure this many times, on fresh processes")
    parser.add_argument("--timeline", type=int, default=0, metavar="N",
                        help="print the stages of the N slowest messages to the admin")
    parser.add_argument("--direct", type=int, default=0, metavar="N",
                        help="instead: publish N messages straight to ems.chat, measure the consumer alone")
    return parser.parse_args()


def stored_messages(settings) -> int:
    import pymysql

    connection = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                                 password=settings.db_password, database=settings.database_name("support"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM messages")
            return cursor.fetchone()[0]
    finally:
        connection.close()


def run_direct(count: int, settings) -> None:
    """Publish `count` client messages to ems.chat and time until they and their answers are stored."""
    from common.amqp import ConfirmingPublisher
    from common.db import utcnow
    from common.messages import ChatMessage
    from common.topology import CHAT_EXCHANGE, CHAT_MESSAGE_KEY

    publisher = ConfirmingPublisher(settings)
    bodies = [ChatMessage(Identity(FIRST_USER_ID + n % 100, "client", "bench"),
                          {"client_message_id": uuid.uuid4().hex, "body": "hi"}, utcnow()).to_json()
              for n in range(count)]
    started = time.perf_counter()
    for body in bodies:
        publisher.publish(CHAT_EXCHANGE, CHAT_MESSAGE_KEY, body)
    published = time.perf_counter() - started
    publisher.close()
    deadline = time.monotonic() + DELIVERY_GRACE_SECONDS * 6
    while (stored := stored_messages(settings)) < 2 * count and time.monotonic() < deadline:
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    print(f"published {count} messages in {published:.1f} s; {stored} messages (with bot answers) stored "
          f"in {elapsed:.1f} s: {count / elapsed:.0f} client messages/s")


class ChatLoad:
    """Client and admin sockets that record when each message and bot answer arrives."""

    def __init__(self, url: str, settings, http: aiohttp.ClientSession):
        self.url, self.settings, self.http = url, settings, http
        self.sockets: dict[int, socketio.AsyncClient] = {}
        self.sent: dict[str, float] = {}                 # client_message_id -> send time
        self.sent_wall: dict[str, float] = {}            # the same on the wall clock
        self.posted_wall: dict[str, float] = {}          # when the consumer posted it (created_at)
        self.stored: dict[int, str] = {}                 # message id -> client_message_id
        self.at_admin: dict[str, float] = {}             # first admin to receive it
        self.bot_answer: dict[int, float] = {}           # answered message id -> arrival
        self.failures: list[str] = []

    async def connect(self, user_id: int, role: str, gate: asyncio.Semaphore) -> None:
        token = mint_access_token(self.settings, Identity(user_id, role, f"{role} {user_id}"))
        client = socketio.AsyncClient(reconnection=False, http_session=self.http)

        @client.on("chat:message")
        async def on_message(message):
            now = time.perf_counter()
            if role == "admin":
                if message["sender_role"] == "client":
                    self.at_admin.setdefault(message["client_message_id"], now)
                    self.posted_wall[message["client_message_id"]] = datetime.fromisoformat(
                        message["created_at"]).timestamp()
                return
            if message["sender_role"] == "client":
                self.stored[message["id"]] = message["client_message_id"]
            elif message["sender_role"] == "bot":
                marker = str(message["client_message_id"])
                if marker.startswith("reply-to:"):
                    self.bot_answer.setdefault(int(marker.split(":")[1]), now)

        async with gate:
            try:
                await client.connect(self.url, transports=["websocket"], auth={"token": token},
                                     wait_timeout=30)
                self.sockets[user_id] = client
            except (TimeoutError, socketio.exceptions.ConnectionError, OSError) as error:
                self.failures.append(f"{type(error).__name__}: {error}")

    async def send(self, user_id: int, body: str) -> str:
        client_message_id = uuid.uuid4().hex
        self.sent[client_message_id] = time.perf_counter()
        self.sent_wall[client_message_id] = time.time()
        await self.sockets[user_id].emit("chat:send", {"client_message_id": client_message_id, "body": body})
        return client_message_id


def report(name: str, latencies: list[float], expected: int) -> tuple[float, float] | None:
    """Print the latencies' p50/p99 and return them."""
    if not latencies:
        print(f"{name}: nothing delivered of {expected}")
        return None
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(f"{name}: {len(latencies)} of {expected} delivered; p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(latencies):.1f} ms (goal p99 < {GOAL_P99_MS} ms)")
    return p50, p99


def print_timelines(load: ChatLoad, to_admin: list[str], slowest: int) -> None:
    """Print each stage's p50/p99 and the stages of the slowest messages to the admin."""
    rows = []
    for client_message_id in to_admin:
        if client_message_id not in load.at_admin:
            continue
        total = (load.at_admin[client_message_id] - load.sent[client_message_id]) * 1000
        to_posted = (load.posted_wall[client_message_id] - load.sent_wall[client_message_id]) * 1000
        rows.append((total, to_posted, total - to_posted, load.sent[client_message_id]))
    if not rows:
        return
    first_send = min(row[3] for row in rows)
    for index, stage in ((1, "send -> posted by the consumer"), (2, "posted -> at the admin")):
        values = [row[index] for row in rows]
        print(f"  {stage}: p50 {statistics.median(values):.1f} ms, p99 {percentile(values, 0.99):.1f} ms")
    for total, to_posted, to_admin_ms, sent_at in sorted(rows)[-slowest:]:
        print(f"  {total:7.1f} ms = {to_posted:6.1f} to posted + {to_admin_ms:6.1f} to the admin "
              f"(sent {sent_at - first_send:5.2f} s into the run)")


async def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


async def run(arguments: argparse.Namespace, settings, url: str) -> tuple:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        load = ChatLoad(url, settings, http)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        clients = list(range(FIRST_USER_ID, FIRST_USER_ID + arguments.clients))
        admins = list(range(FIRST_USER_ID - arguments.admins, FIRST_USER_ID))
        started = time.perf_counter()
        await asyncio.gather(*(load.connect(a, "admin", gate) for a in admins))
        await asyncio.gather(*(load.connect(c, "client", gate) for c in clients))
        print(f"connected {len(load.sockets)} of {len(clients) + len(admins)} sockets in "
              f"{time.perf_counter() - started:.1f} s ({len(load.failures)} failed)")
        clients = [c for c in clients if c in load.sockets]
        freeze_simulated_clients()

        # Half the conversations go to the administrators, the rest stay with the bot.
        waiting, with_bot = clients[: len(clients) // 2], clients[len(clients) // 2:]
        handoffs = [await load.send(c, "I want to talk to a human") for c in waiting]
        await wait_until(lambda: all(cid in load.at_admin for cid in handoffs), SETTLE_TIMEOUT_SECONDS)
        await wait_until(lambda: len(load.bot_answer) >= len(handoffs), SETTLE_TIMEOUT_SECONDS)
        load.at_admin.clear()
        load.bot_answer.clear()
        load.sent.clear()

        total = int(arguments.rate * arguments.seconds)
        to_admin, to_bot = [], []
        interval, next_at = 1.0 / arguments.rate, time.perf_counter()
        started = time.perf_counter()
        for n in range(total):
            if n % 2 == 0:
                to_admin.append(await load.send(random.choice(waiting), f"question {n}"))
            else:
                to_bot.append(await load.send(random.choice(with_bot), "hi"))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        elapsed = time.perf_counter() - started
        print(f"sent {total} messages in {elapsed:.1f} s ({total / elapsed:.0f}/s)")

        def bot_done():
            answered = {load.stored.get(i) for i in load.bot_answer}
            return all(cid in answered for cid in to_bot)

        await wait_until(lambda: all(cid in load.at_admin for cid in to_admin) and bot_done(),
                         DELIVERY_GRACE_SECONDS)
        to_admin_figures = report("client -> admin", [(load.at_admin[c] - load.sent[c]) * 1000
                                                      for c in to_admin if c in load.at_admin], len(to_admin))
        if arguments.timeline:
            print_timelines(load, to_admin, arguments.timeline)
        by_client_id = {cid: message_id for message_id, cid in load.stored.items()}
        bot_latencies = [(load.bot_answer[by_client_id[c]] - load.sent[c]) * 1000 for c in to_bot
                         if c in by_client_id and by_client_id[c] in load.bot_answer]
        bot_figures = report("client -> bot answer", bot_latencies, len(to_bot))
        await asyncio.gather(*(s.disconnect() for s in load.sockets.values()), return_exceptions=True)
        return to_admin_figures, bot_figures


def measure_once(arguments: argparse.Namespace) -> tuple:
    """Run the benchmark once in a virtual host and database of its own; return its figures."""
    with isolated(f"bench-chat-{secrets.token_hex(3)}", {
        "EMS_LOG_LEVEL": "WARNING", "EMS_LLM_BASE_URL": "", "EMS_LLM_MODEL": "",
    }) as variables:
        os.environ.update(variables)
        settings = load_settings()
        upgrade(settings, ("support",))
        port = free_port()
        notifier = ServiceProcess(python_module("notifier"), name="notifier-chat-bench",
                                  env={"EMS_NOTIFIER_PORT": str(port)})
        consumer = ServiceProcess(python_module("support", "consumer"), name="support-consumer-bench")
        if arguments.direct:
            with consumer:
                time.sleep(3)  # let it connect and seed its rules
                run_direct(arguments.direct, settings)
            return None, None
        with notifier, consumer:
            wait_for_port(port, process=notifier.process)
            return asyncio.run(run(arguments, settings, f"http://127.0.0.1:{port}"))


def main() -> None:
    """Measure `--runs` times and print each run's figures with the machine's load beside them."""
    arguments = parse_arguments()
    raise_open_files_limit()
    summary = []
    for number in range(1, arguments.runs + 1):
        print(f"run {number}: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        summary.append(measure_once(arguments))
    if arguments.runs > 1 and not arguments.direct:
        print("p50/p99 ms per run, client -> admin | client -> bot answer:")
        for number, (to_admin, to_bot) in enumerate(summary, start=1):
            figures = [f"{p50:.0f}/{p99:.0f}" if (p50, p99) != (None, None) else "-"
                       for p50, p99 in (to_admin or (None, None), to_bot or (None, None))]
            print(f"  run {number}: {figures[0]} | {figures[1]}")


if __name__ == "__main__":
    main()
