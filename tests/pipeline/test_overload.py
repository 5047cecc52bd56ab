"""Overload: a full `readings.incoming` refuses readings and publishers back off;
a slow database slows the replicas down without costing their broker connections.
Both on the real broker and database, with the real balancer and replicas."""

from __future__ import annotations

import dataclasses
import secrets
import threading

import pytest

from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE, READINGS_QUEUE
from simulator.publisher import ConfirmedBurstPublisher
from tests.isolation import environment, own_vhost
from tests.pipeline.conftest import Pipeline, wait_for
from tests.pipeline.workload import build_workload

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
