"""The broker drops every connection mid-stream, twice: the simulator's publisher,
the balancer and the replicas reconnect (through the second broker of a list whose
first is dead), every publish is confirmed or sent again, and each hourly total is
exact: no reading lost, none counted twice. Real balancer and monitor processes on
quorum queues, on a RabbitMQ virtual host of the test's own."""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import threading
from urllib.parse import unquote, urlsplit

import pytest

from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from simulator.publisher import ConfirmedBurstPublisher
from tests.ha.brokers import with_dead_broker_first
from tests.isolation import environment, own_vhost
from tests.pipeline.conftest import Pipeline, wait_for
from tests.pipeline.workload import build_workload

PROCESSING_TIMEOUT = 90
DROP_AT_SHARES = (0.25, 0.6)
PUBLISH_RATE = 150  # readings/s: the 3,000 readings take 20 s


@pytest.fixture
def failover_pipeline(migrated):
    """Give a test a Pipeline whose processes know two brokers, the first one dead, on quorum queues."""
    with own_vhost("dropped-" + secrets.token_hex(3)) as amqp_url:
        brokers = with_dead_broker_first(amqp_url)
        # The processes the test starts inherit the variables.
        with environment({"EMS_AMQP_URL": brokers, "EMS_QUEUE_TYPE": "quorum"}):
            running = Pipeline(dataclasses.replace(migrated, amqp_url=brokers, queue_type="quorum"))
            running.vhost = unquote(urlsplit(amqp_url).path[1:])
            running.truncate()
            try:
                yield running
            finally:
                running.stop()
                running.engine.dispose()


def close_connections(vhost: str) -> None:
    """Close every client connection to `vhost` (this test's only), as a broker that fails would."""
    subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "--limit", "1000",
                    "broker lost (test)"], check=True, capture_output=True, timeout=60)


def test_connections_dropped_mid_stream_lose_and_double_no_reading(failover_pipeline):
    pipeline = failover_pipeline
    workload = build_workload(readings=3_000, devices=30, duplicate_share=0.05, invalid_share=0)
    pipeline.start_workers()
    pipeline.start_balancer("round-robin")
    # A stream of some seconds, so that the connections drop while readings flow.
    publisher = ConfirmedBurstPublisher(pipeline.settings, READINGS_EXCHANGE, READING_ROUTING_KEY,
                                        rate=PUBLISH_RATE)
    publishing = threading.Thread(target=publisher.publish_all, args=(workload.messages,))
    publishing.start()

    def stored() -> int:
        return pipeline.query("SELECT COUNT(*) FROM readings")[0][0]

    try:
        # Dropped at a quarter and at three fifths of the stream.
        for share in DROP_AT_SHARES:
            wait_for(lambda: stored() >= share * workload.distinct_readings, 60,  # noqa: B023
                     f"{share:.0%} of the readings stored\n{pipeline.logs()}")
            close_connections(pipeline.vhost)
    finally:
        publishing.join(PROCESSING_TIMEOUT)
    assert publisher.summary.confirmed == len(workload.messages)

    def processed():
        return stored() == workload.distinct_readings and \
            pipeline.processed_messages() >= workload.valid_messages
    wait_for(processed, PROCESSING_TIMEOUT, f"every reading stored once\n{pipeline.logs()}")
    assert pipeline.hourly_totals() == workload.expected_hourly, "every hourly total exact"
    assert all(process.running for process in pipeline.processes()), pipeline.logs()
