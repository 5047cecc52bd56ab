"""Scaling out and in while readings flow: replicas join and leave (or die) mid-stream,
and no reading is stranded in the queue of a replica that is gone, nor counted twice."""

from __future__ import annotations

import os
import re
import signal
import threading
from contextlib import contextmanager

import pika.exceptions
import pytest

from common.amqp import connect
from common.topology import INGEST_QUEUE_PATTERN, ingest_queue
from monitor.pipeline_status import pipeline_status
from tests.pipeline.conftest import wait_for
from tests.pipeline.workload import build_workload
from tests.processes import broker_queues, unacknowledged

# A replica that joins gets readings within this (heartbeat every second, balancer tick 0.5 s).
JOIN_SECONDS = 5
PROCESSING_TIMEOUT = 60


@pytest.fixture(scope="module")
def workload():
    """30,000 readings for 200 devices, 5 % delivered twice, 0.5 % invalid."""
    return build_workload(readings=30_000, devices=200, duplicate_share=0.05, invalid_share=0.005)


def stored_by(pipeline, replica: int) -> int:
    """Return how many readings replica `replica` has stored (0 before its first batch)."""
    rows = pipeline.query("SELECT readings_stored FROM replica_stats WHERE replica = :replica",
                          replica=replica)
    return rows[0][0] if rows else 0


def ingest_queues(pipeline) -> dict[str, tuple[int, int]]:
    """Return {ingest queue: (ready, unacknowledged)} of every ingest queue that exists."""
    return {name: counts for name, counts in broker_queues(pipeline.settings.amqp_url).items()
            if re.fullmatch(INGEST_QUEUE_PATTERN, name)}


def assert_nothing_stranded(pipeline, workload) -> None:
    """Wait until every distinct reading is stored, then check totals and every ingest queue."""
    def done():
        stored = pipeline.query("SELECT COUNT(*) FROM readings")[0][0]
        return (stored == workload.distinct_readings
                and pipeline.processed_messages() >= workload.valid_messages)
    try:
        wait_for(done, PROCESSING_TIMEOUT, "every reading stored", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}\nqueues: {ingest_queues(pipeline)}\n{pipeline.logs()}") from None
    totals = pipeline.hourly_totals()
    wrong = {key: (totals.get(key), expected) for key, expected in workload.expected_hourly.items()
             if totals.get(key) != expected}
    assert not wrong, f"{len(wrong)} device-hours are off, e.g. {list(wrong.items())[:3]}"
    assert totals.keys() == workload.expected_hourly.keys()
    wait_for(lambda: all(counts == (0, 0) for counts in ingest_queues(pipeline).values()), 15,
             f"every ingest queue empty: {ingest_queues(pipeline)}", interval=0.5)


def replicas_on_the_page(pipeline) -> dict:
    """Return {replica: ReplicaStatus} as the admin Pipeline page shows them."""
    with pipeline.engine.connect() as connection:
        status = pipeline_status(pipeline.settings, connection)
    return {replica.replica: replica for replica in status.replicas}


@contextmanager
def publishing(pipeline, bodies: list[bytes]):
    """Publish `bodies` in the background while the block runs; leaving waits for the publisher."""
    publisher = threading.Thread(target=pipeline.publish_readings, args=(bodies,))
    publisher.start()
    try:
        yield
    finally:
        publisher.join(60)


def start_and_wait_consuming(pipeline, replica: int) -> None:
    """Start replica `replica` and wait until it consumes (its start-up is the machine's, not ours)."""
    pipeline.start_worker(replica)

    def consumers() -> int:
        connection = connect(pipeline.settings, declare=False)
        try:
            declared = connection.channel().queue_declare(ingest_queue(replica), passive=True)
            return declared.method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0  # the replica declares its queue when it starts consuming
        finally:
            connection.close()
    wait_for(consumers, 30, f"replica {replica} to consume\n{pipeline.logs()}", interval=0.2)


def stop_replicas(pipeline, replicas: list[int]) -> None:
    """Stop replicas as an operator scaling in does (SIGTERM, all at once); each drains and exits 0."""
    for replica in replicas:
        os.killpg(pipeline.workers[replica].process.pid, signal.SIGTERM)
    for replica in replicas:
        assert pipeline.workers[replica].process.wait(15) == 0, pipeline.workers[replica].log()[-2000:]


def test_scaling_3_5_2_3_mid_stream_keeps_every_total_exact(pipeline, workload):
    # Three parts, each published once the replicas of its stage consume, so that every
    # stage has readings to route whatever this machine's speed.
    first, second, third = (workload.messages[part::3] for part in range(3))
    pipeline.start_workers()
    pipeline.start_balancer("consistent")
    with pipeline.publishing_until_busy(first, stored_at_least=3000):  # 3 -> 5
        start_and_wait_consuming(pipeline, 4)
        start_and_wait_consuming(pipeline, 5)
    with publishing(pipeline, second):
        # A replica that joined gets readings within JOIN_SECONDS (plus its first commit).
        wait_for(lambda: stored_by(pipeline, 4) and stored_by(pipeline, 5), JOIN_SECONDS + 2,
                 f"replicas 4 and 5 to store readings\n{pipeline.logs()}", interval=0.2)
        stop_replicas(pipeline, [3, 4, 5])  # 5 -> 2, mid-stream
    start_and_wait_consuming(pipeline, 3)  # 2 -> 3
    stored_3 = stored_by(pipeline, 3)
    with publishing(pipeline, third):
        wait_for(lambda: stored_by(pipeline, 3) > stored_3, JOIN_SECONDS + 2,
                 "replica 3 back to store readings", interval=0.2)

    assert_nothing_stranded(pipeline, workload)
    # The queues of the slots that are gone were deleted once empty.
    wait_for(lambda: not {ingest_queue(4), ingest_queue(5)} & ingest_queues(pipeline).keys(), 15,
             f"ingest.4 and ingest.5 deleted: {ingest_queues(pipeline)}", interval=0.5)
    assert all(pipeline.workers[r].running for r in (1, 2, 3)) and pipeline.balancer.running, pipeline.logs()

    def page_after_scaling():
        shown = replicas_on_the_page(pipeline)
        states = {replica: status.state for replica, status in shown.items()}
        return shown if states == {1: "active", 2: "active", 3: "active", 4: "gone", 5: "gone"} else None
    page = wait_for(page_after_scaling, 10, "the Pipeline page to show replicas 1-3 active, 4 and 5 gone")
    # Under consistent hashing each device was last routed to one replica: all 200 counted once.
    assert sum(replica.devices for replica in page.values()) == 200
    assert all(replica.readings_per_second > 0 for replica in page.values() if replica.replica <= 3)


def test_readings_of_a_replica_killed_for_good_are_moved_and_counted_once(pipeline, workload):
    pipeline.start_workers()
    pipeline.start_balancer("hash")
    with pipeline.publishing_until_busy(workload.messages, stored_at_least=3000):
        # Killed holding readings it has not acked, and never restarted: those and what
        # waits in ingest.2 must reach replicas 1 and 3 through the balancer.
        pipeline.workers[2].kill_holding(lambda: unacknowledged(pipeline.settings.amqp_url, ingest_queue(2)))
        stored_2 = stored_by(pipeline, 2)

    assert_nothing_stranded(pipeline, workload)
    assert stored_by(pipeline, 2) == stored_2, "nothing more went to the dead replica"
    assert "balancer.orphan_draining" in pipeline.balancer.log(), pipeline.balancer.log()[-3000:]
