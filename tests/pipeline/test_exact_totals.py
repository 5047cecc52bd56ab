"""Exact totals: whatever the strategy, duplicates and invalid readings, every
hourly total equals the exact sum of the distinct valid readings."""

from __future__ import annotations

import pytest

from common.topology import DEAD_LETTER_REASON_HEADER, DEAD_LETTERS_QUEUE, READINGS_QUEUE, ingest_queue
from monitor.pipeline_status import balancer_counters, balancer_view
from tests.pipeline.conftest import REPLICAS, wait_for
from tests.pipeline.workload import build_workload
from tests.processes import unacknowledged

PROCESSING_TIMEOUT = 90


@pytest.fixture(scope="module")
def workload():
    """20,000 readings for 50 devices, 10 % delivered twice, 1 % invalid."""
    return build_workload(readings=20_000, devices=50, duplicate_share=0.10, invalid_share=0.01)


def wait_until_processed(pipeline, workload) -> None:
    """Wait until the replicas handled every valid message and stored every distinct reading."""
    def done():
        stored = pipeline.query("SELECT COUNT(*) FROM readings")[0][0]
        return stored == workload.distinct_readings and \
            pipeline.processed_messages() >= workload.valid_messages
    try:
        wait_for(done, PROCESSING_TIMEOUT, "the replicas to process every reading")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{pipeline.logs()}") from None


def assert_exact(pipeline, workload) -> None:
    """Assert that hourly totals are exactly the expected sums."""
    totals = pipeline.hourly_totals()
    assert totals.keys() == workload.expected_hourly.keys()
    wrong = {key: (totals[key], expected) for key, expected in workload.expected_hourly.items()
             if totals[key] != expected}
    assert not wrong, f"{len(wrong)} device-hours are off, e.g. {list(wrong.items())[:3]}"


def assert_invalid_dead_lettered(pipeline, workload) -> None:
    """Assert that every invalid message, and only those, is in dead.letters with a reason."""
    dead = pipeline.drain(DEAD_LETTERS_QUEUE)
    assert sorted(body for _, body in dead) == sorted(workload.invalid)
    reasons = [properties.headers.get(DEAD_LETTER_REASON_HEADER) for properties, _ in dead]
    assert all(reasons), "every dead letter carries its reason"
    assert any("not valid JSON" in reason for reason in reasons)
    assert any("must not be negative" in reason for reason in reasons)


@pytest.mark.parametrize("strategy", ["round-robin", "hash", "consistent", "least-loaded"])
def test_hourly_totals_are_exact_with_three_replicas(pipeline, workload, strategy):
    pipeline.start_workers()
    pipeline.start_balancer(strategy)
    assert pipeline.publish_readings(workload.messages) == len(workload.messages)

    wait_until_processed(pipeline, workload)

    assert_exact(pipeline, workload)
    assert_invalid_dead_lettered(pipeline, workload)
    # The balancer's counters for the pipeline page add up (in its view, sent every 2 s).
    def balancer_totals() -> tuple:
        counters = balancer_counters(balancer_view(pipeline.settings))
        return counters.strategy, sum(counters.routed.values()), counters.dead_lettered
    wait_for(lambda: balancer_totals() == (strategy, workload.valid_messages, len(workload.invalid)), 15,
             "the balancer's counters in its view")
    per_replica = dict(pipeline.query(
        "SELECT replica, readings_stored FROM replica_stats WHERE readings_stored > 0"))
    assert set(per_replica) == set(range(1, REPLICAS + 1)), "every replica took a share"
    assert all(process.running for process in pipeline.processes()), pipeline.logs()


def test_a_replica_killed_mid_stream_loses_and_doubles_nothing(pipeline, workload):
    pipeline.start_workers()
    pipeline.start_balancer("round-robin")
    with pipeline.publishing_until_busy(workload.messages, stored_at_least=4000):
        # Killed holding readings it has not acked: the broker must deliver them again.
        pipeline.workers[2].kill_holding(lambda: unacknowledged(pipeline.settings.amqp_url, ingest_queue(2)))
        pipeline.start_worker(2)

    wait_until_processed(pipeline, workload)

    assert_exact(pipeline, workload)
    assert all(process.running for process in pipeline.processes()), pipeline.logs()


def test_the_balancer_killed_mid_stream_loses_and_doubles_nothing(pipeline, workload):
    pipeline.start_workers()
    pipeline.start_balancer("hash")
    with pipeline.publishing_until_busy(workload.messages, stored_at_least=4000):
        # Killed holding readings it has not routed (or whose routing is not confirmed yet).
        pipeline.balancer.kill_holding(lambda: unacknowledged(pipeline.settings.amqp_url, READINGS_QUEUE))
        pipeline.start_balancer("hash")

    wait_until_processed(pipeline, workload)

    assert_exact(pipeline, workload)
    # A reading the killed balancer had dead-lettered but not yet acked comes back
    # and is dead-lettered again: repeated, never lost.
    dead = {body for _, body in pipeline.drain(DEAD_LETTERS_QUEUE)}
    assert dead == set(workload.invalid)
    assert all(process.running for process in pipeline.processes()), pipeline.logs()
