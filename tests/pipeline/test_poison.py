"""Live poison tests: whatever is published to a pipeline queue, its consumer dead-letters
what it cannot handle, once, with a reason, and goes on with the valid messages behind it."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

from common.topology import (
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERS_QUEUE,
    EVENTS_EXCHANGE,
    INGEST_EXCHANGE,
    MONITOR_EVENTS_QUEUE,
    READING_ROUTING_KEY,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    ingest_queue,
    ingest_routing_key,
)
from tests.pipeline.conftest import wait_for
from tests.poison import POISON

# The promise: the valid messages behind the poison are processed within 5 s.
BEHIND_POISON_SECONDS = 5


def valid_readings(count: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    device_id = str(uuid.uuid4())
    return [json.dumps({"timestamp": now_ms - n * 60_000, "device_id": device_id,
                        "measurement_value": 0.01}).encode() for n in range(count)]


def assert_poison_dead_lettered_once(pipeline, source_queue: str) -> None:
    dead: list = []

    def all_dead_lettered() -> bool:
        dead.extend(pipeline.drain(DEAD_LETTERS_QUEUE))
        return len(dead) >= len(POISON)

    wait_for(all_dead_lettered, 10, f"every poison message dead-lettered\n{pipeline.logs()}", interval=0.3)
    bodies = Counter(body for _, body in dead)
    assert bodies == Counter(body for _, body, _ in POISON), "each poison message, once"
    for properties, body in dead:
        reason = properties.headers.get(DEAD_LETTER_REASON_HEADER)
        assert reason and reason.isprintable(), f"a printable reason for {body[:40]!r}: {reason!r}"
        assert properties.headers.get("x-ems-source-queue") == source_queue


def test_poison_on_readings_incoming_leaves_the_balancer_routing(pipeline):
    pipeline.start_workers()
    balancer = pipeline.start_balancer("round-robin")
    pipeline.wait_consuming(READINGS_QUEUE)
    pid = balancer.process.pid
    readings = valid_readings(30)

    pipeline.publish_raw(READINGS_EXCHANGE, READING_ROUTING_KEY, readings, poison=True)

    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == len(readings),
             BEHIND_POISON_SECONDS, f"the valid readings behind the poison stored\n{pipeline.logs()}")
    assert balancer.running and balancer.process.pid == pid, balancer.log()[-3000:]
    assert "balancer.connected" in balancer.log() and balancer.log().count("balancer.connected") == 1, \
        "the balancer kept its one connection"
    assert_poison_dead_lettered_once(pipeline, READINGS_QUEUE)


def test_poison_on_an_ingest_queue_leaves_the_replica_storing(pipeline):
    worker = pipeline.start_worker(1)
    pipeline.wait_consuming(ingest_queue(1))
    pid = worker.process.pid
    readings = valid_readings(30)

    pipeline.publish_raw(INGEST_EXCHANGE, ingest_routing_key(1), readings, poison=True)

    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == len(readings),
             BEHIND_POISON_SECONDS, f"the valid readings behind the poison stored\n{pipeline.logs()}")
    assert worker.running and worker.process.pid == pid, worker.log()[-3000:]
    assert worker.log().count("monitor.worker_connected") == 1, "the replica kept its one connection"
    assert_poison_dead_lettered_once(pipeline, ingest_queue(1))


def test_poison_on_monitor_events_does_not_stall_device_changes(pipeline):
    events = pipeline.start_events()
    pipeline.wait_consuming(MONITOR_EVENTS_QUEUE)
    pid = events.process.pid
    device_id = str(uuid.uuid4())

    pipeline.publish_raw(EVENTS_EXCHANGE, "device.created", poison=True)
    pipeline.publish_device(1, device_id, owner_id=3, limit=1.5)

    wait_for(lambda: pipeline.query("SELECT owner_id FROM devices WHERE id = :id", id=device_id),
             BEHIND_POISON_SECONDS, f"the device event behind the poison applied\n{pipeline.logs()}")
    assert events.running and events.process.pid == pid, events.log()[-3000:]
    assert_poison_dead_lettered_once(pipeline, MONITOR_EVENTS_QUEUE)


def test_a_conflicting_duplicate_is_dead_lettered_and_counted_under_round_robin(pipeline):
    pipeline.start_workers()
    pipeline.start_balancer("round-robin")
    pipeline.wait_consuming(READINGS_QUEUE)
    stamp, device_id = int(time.time() * 1000) - 60_000, str(uuid.uuid4())
    first = json.dumps({"timestamp": stamp, "device_id": device_id, "measurement_value": 0.25}).encode()
    # Round robin sends these to three different replicas: the first stored value stands.
    conflicting = [json.dumps({"timestamp": stamp, "device_id": device_id,
                               "measurement_value": 0.25 + n / 100}).encode() for n in (1, 2)]
    pipeline.publish_readings([first])
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == 1, 10, "the first stored")

    pipeline.publish_readings(conflicting + [first])

    dead: list = []
    wait_for(lambda: dead.extend(pipeline.drain(DEAD_LETTERS_QUEUE)) or len(dead) >= 2, 10,
             "both conflicting readings dead-lettered", interval=0.3)
    assert sorted(body for _, body in dead) == sorted(conflicting)
    assert all(p.headers[DEAD_LETTER_REASON_HEADER].startswith("conflicting-duplicate") for p, _ in dead)
    assert pipeline.query("SELECT kwh FROM readings")[0][0] == pipeline.query(
        "SELECT kwh FROM hourly_consumption")[0][0] == pipeline.query("SELECT 0.25")[0][0]
    wait_for(lambda: pipeline.query(
        "SELECT SUM(conflicting_duplicates), SUM(duplicates) FROM replica_stats")[0] == (2, 1), 5,
        "two conflicting duplicates and one plain duplicate counted")
