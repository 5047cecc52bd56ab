"""The pipeline lives through a RabbitMQ restart mid-stream (rabbitmqctl stop_app/start_app):
the simulator's publisher, the balancer, every replica and the events consumer
reconnect by themselves, and the hourly totals stay exact.

This disturbs every other test run on the machine: keep it rare and run it alone.
"""

from __future__ import annotations

import subprocess
import uuid

from tests.pipeline.conftest import pipeline, wait_for  # noqa: F401 - the fixture is used by name
from tests.pipeline.test_exact_totals import assert_exact, wait_until_processed
from tests.pipeline.workload import build_workload
from tests.processes import wait_for_port


def rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=120)


def restart_rabbitmq() -> None:
    """Stop and start the RabbitMQ application and wait until AMQP answers again."""
    rabbitmqctl("stop_app")
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")
    wait_for_port(5672, timeout=60)


def test_totals_stay_exact_when_rabbitmq_restarts_mid_stream(pipeline):  # noqa: F811
    workload = build_workload(readings=10_000, devices=50, duplicate_share=0.10, invalid_share=0.01)
    pipeline.start_events()
    pipeline.start_workers()
    pipeline.start_balancer("consistent")
    # The simulator's publisher resends whatever was unconfirmed when the connection dropped.
    with pipeline.publishing_until_busy(workload.messages, stored_at_least=2000, join_seconds=120):
        restart_rabbitmq()

    wait_until_processed(pipeline, workload)
    assert_exact(pipeline, workload)
    # The events consumer is back too: a device event after the restart is applied.
    device_id = str(uuid.uuid4())
    pipeline.publish_device(1, device_id, owner_id=3, limit=2.0)
    wait_for(lambda: pipeline.query("SELECT 1 FROM devices WHERE id = :id", id=device_id), 60,
             "the events consumer to apply an event after the restart")
    assert all(process.running for process in pipeline.processes()), pipeline.logs()
