"""Benchmark the ingestion pipeline: readings/s end to end per strategy, 1 vs 3 replicas.

    .venv/bin/python bench/ingest.py [--count 20000] [--devices 50] [--strategies ...]

Runs against a RabbitMQ virtual host and database prefix of its own (removed
at the end). First measures the raw broker ceiling on this machine: one pika
publisher (confirms, as the simulator publishes) and one consumer on one
durable queue doing no work, from the first publish to the last message
consumed. Then, for each strategy and for 1 and 3 replicas, starts the real
balancer and monitor workers, publishes `--count` readings and measures from
the first publish to the last reading's hourly total committed. Prints the
figures side by side and their ratio to the ceiling; asserts nothing (the
goal is at least 3,000 readings/s with 3 replicas, ratio at least 0.35).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pika.exceptions  # noqa: E402
from sqlalchemy import text  # noqa: E402

from balancer.strategies import STRATEGY_NAMES  # noqa: E402
from bench.measure import publish_until_stored  # noqa: E402
from common.amqp import connect  # noqa: E402
from common.settings import load_settings  # noqa: E402
from common.topology import (  # noqa: E402
    DEAD_LETTERS_QUEUE,
    READINGS_QUEUE,
    QueueOptions,
    declare_queue,
    ingest_queue,
    ingest_queue_definition,
)
from migrations.runner import upgrade  # noqa: E402
from monitor.storage import create_monitor_engine  # noqa: E402
from simulator.modes import load_bodies, now_ms  # noqa: E402
from simulator.publisher import ConfirmedBurstPublisher  # noqa: E402
from tests.isolation import isolated  # noqa: E402
from tests.processes import ServiceProcess, python_module  # noqa: E402

GOAL_READINGS_PER_SECOND = 3000
GOAL_RATIO = 0.35
CEILING_QUEUE = "bench.ceiling"
TIMEOUT_SECONDS = 300
# Replicas heartbeat twice a second: the balancer has heard them all by then.
MEMBERSHIP_SETTLE_SECONDS = 2.5


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="readings per run")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGY_NAMES))
    parser.add_argument("--replicas", nargs="*", type=int, default=[1, 3])
    return parser.parse_args()


def broker_ceiling(settings, count: int) -> float:
    """Return messages/s through one durable queue: one confirming publisher, one idle consumer."""
    connection = connect(settings)
    channel = connection.channel()
    channel.queue_declare(CEILING_QUEUE, durable=True, arguments={"x-queue-type": settings.queue_type})
    channel.queue_purge(CEILING_QUEUE)
    connection.close()
    consumed = threading.Event()

    def consume():
        consumer = connect(settings, declare=False)
        consumer_channel = consumer.channel()
        consumer_channel.basic_qos(prefetch_count=1000)
        received = 0
        for method, _, _ in consumer_channel.consume(CEILING_QUEUE, inactivity_timeout=30):
            if method is None:
                break
            received += 1
            if received % 100 == 0 or received == count:
                consumer_channel.basic_ack(method.delivery_tag, multiple=True)
            if received == count:
                consumed.set()
                break
        consumer.close()

    thread = threading.Thread(target=consume)
    thread.start()
    body = (b'{"timestamp":1732611600000,"device_id":"0b6d5c7e-8a4f-4c1e-9d5b-2f6a7e8b9c01",'
            b'"measurement_value":0.1}')
    started = time.monotonic()
    ConfirmedBurstPublisher(settings, "", CEILING_QUEUE).publish_all(body for _ in range(count))
    consumed.wait(TIMEOUT_SECONDS)
    seconds = time.monotonic() - started
    thread.join(5)
    return count / seconds


class PipelineRun:
    """One end-to-end run: balancer + replicas, `count` readings, until all are committed."""

    name = "bench"

    def __init__(self, settings, engine, strategy: str, replicas: int):
        self.settings = settings
        self.engine = engine
        self.strategy = strategy
        self.replicas = replicas
        self.env = {"EMS_BALANCER_STRATEGY": strategy, "EMS_MONITOR_REPLICAS": str(replicas),
                    "EMS_LOG_LEVEL": "WARNING"}

    def reset(self) -> None:
        """Empty the tables and the queues of the last run."""
        with self.engine.begin() as connection:
            for table in ("readings", "hourly_consumption", "alerts", "replica_stats"):
                connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names
        connection = connect(self.settings)
        channel = connection.channel()
        for queue in (READINGS_QUEUE, DEAD_LETTERS_QUEUE):
            channel.queue_purge(queue)
        for n in range(1, self.replicas + 1):
            # Each replica's own queue (the balancer deletes one whose replica is gone).
            declare_queue(channel, ingest_queue_definition(n, QueueOptions.from_settings(self.settings)))
            channel.queue_purge(ingest_queue(n))
        connection.close()

    def wait_for_consumers(self) -> None:
        """Wait until the balancer routes and every replica consumes (start-up is not measured)."""
        queues = [READINGS_QUEUE, *(ingest_queue(n) for n in range(1, self.replicas + 1))]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            connection = connect(self.settings, declare=False)
            try:
                channel = connection.channel()
                ready = all(channel.queue_declare(q, passive=True).method.consumer_count for q in queues)
            except pika.exceptions.ChannelClosedByBroker:
                ready = False  # a queue is not there yet: its replica declares it when it consumes
            finally:
                connection.close()
            if ready:
                # The balancer routes to a replica once it has heard its heartbeats.
                time.sleep(MEMBERSHIP_SETTLE_SECONDS)
                return
            time.sleep(0.2)
        raise TimeoutError("the pipeline did not start")

    def stored(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT COUNT(*) FROM readings")).scalar()

    def started(self, workers: list[ServiceProcess]) -> None:
        """Act on the replicas once they consume, before the clock starts (nothing here)."""

    def stopped(self) -> None:
        """Undo what `started` did (nothing here)."""

    def measure(self, count: int, devices: int) -> float:
        """Return readings/s from the first publish to the last hourly total committed."""
        self.reset()
        balancer = ServiceProcess(python_module("balancer"), env=self.env, name=f"{self.name}-balancer")
        workers = [ServiceProcess(python_module("monitor", "worker", "--replica", str(n)), env=self.env,
                                  name=f"{self.name}-monitor-{n}") for n in range(1, self.replicas + 1)]
        processes = [balancer, *workers]
        for process in processes:
            process.start()
        try:
            self.wait_for_consumers()
            self.started(workers)
            device_ids = [str(uuid.uuid4()) for _ in range(devices)]
            bodies = load_bodies(device_ids, count, now_ms() // 600_000 * 600_000)
            return publish_until_stored(self.settings, bodies, self.stored, TIMEOUT_SECONDS)
        finally:
            for process in processes:
                process.stop()
            self.stopped()


def main() -> None:
    """Run the benchmark and print the table."""
    arguments = parse_arguments()
    with isolated(f"bench-ingest-{secrets.token_hex(3)}", {"EMS_ENV": "test"}) as variables:
        os.environ.update(variables)
        settings = load_settings()
        upgrade(settings, ("monitor",))
        engine = create_monitor_engine(settings)
        ceiling = broker_ceiling(settings, arguments.count)
        print(f"raw broker ceiling (1 publisher with confirms, 1 consumer, 1 queue): {ceiling:,.0f} msg/s")
        print(f"end to end, {arguments.count:,} readings, {arguments.devices} devices "
              "(first publish -> last hourly total committed):")
        columns = "".join(f"{f'{n} replica(s)':>16}{'ratio':>8}" for n in arguments.replicas)
        print(f"{'strategy':<14}{columns}")
        for strategy in arguments.strategies:
            cells = []
            for replicas in arguments.replicas:
                rate = PipelineRun(settings, engine, strategy, replicas).measure(arguments.count,
                                                                                  arguments.devices)
                cells.append(f"{rate:>14,.0f}/s{rate / ceiling:>8.2f}")
            print(f"{strategy:<14}" + "".join(cells), flush=True)
        print(f"goal with 3 replicas: >= {GOAL_READINGS_PER_SECOND:,} readings/s, ratio >= {GOAL_RATIO}")
        engine.dispose()


if __name__ == "__main__":
    main()
