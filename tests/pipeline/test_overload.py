"""Overload: a full `readings.incoming` refuses readings and publishers back off;
a slow database slows the replicas down without costing their broker connections.
Both on the real broker and database, with the real balancer and replicas."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from common.topology import (
    INGEST_EXCHANGE,
    READING_ROUTING_KEY,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    ingest_routing_key,
)
from simulator.publisher import ConfirmedBurstPublisher
from tests.isolation import environment, own_vhost
from tests.pipeline.conftest import Pipeline, wait_for
from tests.pipeline.workload import build_workload
from tests.processes import ServiceProcess, TcpProxy, python_module

READINGS_LIMIT = 200
WINDOW = 500


@pytest.fixture
def bounded_pipeline(migrated):
    """Give a test a Pipeline on a virtual host of its own whose readings.incoming holds 200 readings."""
    with own_vhost("overload-" + secrets.token_hex(3)) as amqp_url:
        variables = {"EMS_AMQP_URL": amqp_url, "EMS_READINGS_QUEUE_MAX_LENGTH": str(READINGS_LIMIT)}
        # The processes the test starts inherit the variables.
        with environment(variables):
            running = Pipeline(dataclasses.replace(migrated, amqp_url=amqp_url,
                                                   readings_queue_max_length=READINGS_LIMIT))
            running.truncate()
            try:
                yield running
            finally:
                running.stop()
                running.engine.dispose()


def queue_depth(pipeline, queue: str) -> int:
    """Return how many ready messages `queue` holds now."""
    from common.amqp import connect

    connection = connect(pipeline.settings)
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_a_full_readings_queue_nacks_and_the_simulator_retries_until_every_reading_is_stored(
        bounded_pipeline):
    pipeline = bounded_pipeline
    workload = build_workload(readings=2_000, devices=20, duplicate_share=0, invalid_share=0)
    publisher = ConfirmedBurstPublisher(pipeline.settings, READINGS_EXCHANGE, READING_ROUTING_KEY,
                                        window=WINDOW)
    drawn = []

    def bodies():
        for body in workload.messages:
            drawn.append(body)
            yield body

    publishing = threading.Thread(target=publisher.publish_all, args=(bodies(),))
    publishing.start()
    try:
        # No balancer yet: the queue fills to its limit and the broker refuses the rest.
        wait_for(lambda: publisher.summary.nacked > 0, 15, "the broker to nack readings beyond the limit")
        assert queue_depth(pipeline, READINGS_QUEUE) == READINGS_LIMIT
        assert publishing.is_alive(), "the publisher waits for its refused readings to be taken"
        assert publisher.summary.confirmed == READINGS_LIMIT
        assert len(drawn) <= READINGS_LIMIT + WINDOW, "the refused readings wait within the window"

        pipeline.start_workers()
        pipeline.start_balancer("round-robin")
    finally:
        publishing.join(60)
    assert not publishing.is_alive(), pipeline.logs()

    summary = publisher.summary
    assert summary.confirmed == len(workload.messages), "every reading was confirmed in the end"
    assert summary.nacked > 0 and summary.sent == summary.confirmed + summary.nacked + summary.resent
    # Backing off, not hammering: after the first refused window, only a few probes.
    assert summary.nacked < 2 * WINDOW, summary.line()
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == workload.distinct_readings,
             30, f"every reading stored\n{pipeline.logs()}")
    assert pipeline.hourly_totals() == workload.expected_hourly, "every hourly total is exact"
    assert all(process.running for process in pipeline.processes()), pipeline.logs()


SLOW_DATABASE_DELAY = 0.1  # seconds added to every chunk, either way: a 200 ms round trip
HEARTBEAT_SECONDS = 2  # the broker cuts a worker off after about twice this long without a frame
LOCK_SECONDS = 3 * HEARTBEAT_SECONDS


def store_and_time(pipeline, workload, already: int) -> float:
    """Publish the workload straight to replica 1's queue; return the seconds until all is stored."""
    started = time.monotonic()
    publisher = ConfirmedBurstPublisher(pipeline.settings, INGEST_EXCHANGE, ingest_routing_key(1))
    assert publisher.publish_all(workload.messages).confirmed == len(workload.messages)
    stored = already + workload.distinct_readings
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == stored, 30,
             f"the readings stored\n{pipeline.logs()}")
    return time.monotonic() - started


@contextmanager
def readings_locked(pipeline):
    """Hold a write lock on the readings table for the block: every batch waits for it."""
    with pipeline.engine.connect() as connection:
        connection.execute(text("LOCK TABLES readings WRITE"))
        try:
            yield
        finally:
            connection.execute(text("UNLOCK TABLES"))


def test_a_slow_database_slows_a_replica_down_without_costing_its_broker_connection(pipeline):
    slow, locked, fast = (build_workload(readings=2_000, devices=20, duplicate_share=0, invalid_share=0,
                                         seed=seed) for seed in (1, 2, 3))
    with TcpProxy(pipeline.settings.db_port) as database:
        # A log of its own: the replicas of earlier tests wrote to monitor-1's.
        env = {"EMS_DB_PORT": str(database.port), "EMS_AMQP_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}
        worker = pipeline.workers[1] = ServiceProcess(
            python_module("monitor", "worker", "--replica", "1"), env=env,
            name=f"monitor-slow-db-{secrets.token_hex(3)}").start()
        wait_for(lambda: "monitor.worker_connected" in worker.log(), 15, "the replica connected")

        database.delay = SLOW_DATABASE_DELAY
        slow_seconds = store_and_time(pipeline, slow, already=0)
        # A batch that waits for a lock longer than the heartbeat timeout.
        with readings_locked(pipeline):
            ConfirmedBurstPublisher(pipeline.settings, INGEST_EXCHANGE, ingest_routing_key(1)).publish_all(
                locked.messages)
            time.sleep(LOCK_SECONDS)
        database.delay = 0
        already = slow.distinct_readings + locked.distinct_readings
        fast_seconds = store_and_time(pipeline, fast, already=already)

    log = worker.log()
    assert log.count("monitor.worker_connected") == 1 and "amqp.reconnect" not in log, log[-3000:]
    # Every message handled once: no batch was redelivered after a lost connection.
    assert pipeline.processed_messages() == slow.valid_messages + locked.valid_messages + fast.valid_messages
    assert fast_seconds < slow_seconds / 2, (slow_seconds, fast_seconds)
    assert worker.running, log[-3000:]
