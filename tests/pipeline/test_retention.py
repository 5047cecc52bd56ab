"""Retention of raw readings: partitions created ahead and dropped when expired, readings older
than the window dead-lettered, and the migration from the wide layout keeping every total."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pika
import pytest
from alembic import command
from sqlalchemy import text

from common.db import create_databases, drop_databases
from common.messages import Reading
from common.topology import (
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERS_QUEUE,
    INGEST_EXCHANGE,
    ingest_queue,
    ingest_routing_key,
)
from migrations.runner import alembic_config
from monitor import worker as worker_module
from monitor.maintenance import (
    DAY_MS,
    DAYS_AHEAD,
    lock_name,
    partition_name,
    readings_partitions,
    run_once,
)
from monitor.pipeline_status import pipeline_status
from monitor.storage import create_monitor_engine, store_readings
from monitor.worker import IngestWorker
from tests.pipeline.conftest import wait_for

RETENTION_DAYS = 90


@pytest.fixture
def own_monitor(migrated):
    """Yield settings of a monitor database of this test's own, at the newest migration."""
    settings = dataclasses.replace(migrated, db_prefix=f"{migrated.db_prefix}r{uuid.uuid4().hex[:6]}_")
    create_databases(settings, ("monitor",))
    try:
        command.upgrade(alembic_config(settings, "monitor"), "head")
        yield settings
    finally:
        drop_databases(settings, ("monitor",))


def scalar(engine, sql: str, **parameters):
    with engine.connect() as connection:
        return connection.execute(text(sql), parameters).scalar()


def partitions(engine) -> list[str]:
    with engine.connect() as connection:
        return [partition.name for partition in readings_partitions(connection)]


def today_ms() -> int:
    return int(time.time() * 1000) // DAY_MS * DAY_MS


def test_maintenance_creates_the_days_ahead_and_each_reading_lands_in_its_day(own_monitor):
    engine = create_monitor_engine(own_monitor)
    # Ten days on, as if the process had not run since the migration.
    later_ms = today_ms() + 10 * DAY_MS + 3_600_000
    result = run_once(engine, own_monitor, now_ms=later_ms)

    last_day = today_ms() + (10 + DAYS_AHEAD) * DAY_MS
    assert partition_name(last_day) in result.created
    assert partitions(engine)[-2:] == [partition_name(last_day), "p_future"]
    store_readings(engine, [Reading(later_ms + DAY_MS, str(uuid.uuid4()), 0.5)], replica=1)
    day = partition_name(later_ms // DAY_MS * DAY_MS + DAY_MS)
    assert scalar(engine, f"SELECT COUNT(*) FROM readings PARTITION ({day})") == 1  # noqa: S608
    engine.dispose()


def test_maintenance_drops_expired_days_and_keeps_hourly_totals(own_monitor):
    engine = create_monitor_engine(own_monitor)
    device_id = str(uuid.uuid4())
    old_ms = today_ms() - RETENTION_DAYS * DAY_MS + 3_600_000  # the first day of the window
    recent_ms = today_ms() - DAY_MS
    store_readings(engine, [Reading(old_ms, device_id, 0.25), Reading(recent_ms, device_id, 0.5)], replica=1)
    expired_day = partition_name(old_ms // DAY_MS * DAY_MS)
    assert expired_day in partitions(engine)

    # Two days later the old reading's day is out of the window.
    result = run_once(engine, own_monitor, now_ms=today_ms() + 2 * DAY_MS + 7_200_000)

    assert {"p_history", expired_day} <= set(result.dropped)
    assert expired_day not in partitions(engine)
    assert scalar(engine, "SELECT timestamp_ms FROM readings") == recent_ms
    assert scalar(engine, "SELECT SUM(kwh) FROM hourly_consumption") == Decimal("0.75")
    engine.dispose()


def test_maintenance_run_twice_changes_nothing_more_and_waits_for_no_one(own_monitor):
    engine = create_monitor_engine(own_monitor)
    now_ms = today_ms() + 3 * DAY_MS
    first = run_once(engine, own_monitor, now_ms=now_ms)
    layout = partitions(engine)
    second = run_once(engine, own_monitor, now_ms=now_ms)

    assert first.created and first.dropped
    assert (second.created, second.dropped) == ([], [])
    assert partitions(engine) == layout
    # Another process at work holds the lock: this one leaves at once, changing nothing.
    with engine.connect() as holder:
        assert holder.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": lock_name(own_monitor)}).scalar()
        assert run_once(engine, own_monitor, now_ms=now_ms + 30 * DAY_MS) is None
        holder.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name(own_monitor)})
    assert partitions(engine) == layout
    engine.dispose()


def reading_body(timestamp_ms: int, device_id: str, kwh: float = 0.1) -> bytes:
    return json.dumps({"timestamp": timestamp_ms, "device_id": device_id, "measurement_value": kwh}).encode()


def test_the_retention_boundary_is_exact_to_the_second(migrated, monkeypatch):
    now = time.time()
    monkeypatch.setattr(worker_module.time, "time", lambda: now)
    window_start_ms = int(now * 1000) - RETENTION_DAYS * DAY_MS
    device_id = str(uuid.uuid4())
    inside, outside = (reading_body(window_start_ms + 1000, device_id),
                       reading_body(window_start_ms - 1000, device_id))
    replica = IngestWorker(dataclasses.replace(migrated, raw_retention_days=RETENTION_DAYS), None, 1)
    batch = [(SimpleNamespace(delivery_tag=n), pika.BasicProperties(), body)
             for n, body in enumerate((inside, outside))]

    readings, rejected = replica._parse(batch)

    assert [delivery[2] for delivery, _ in readings] == [inside]
    assert [(delivery[2], reason.split(" ")[0]) for delivery, reason in rejected] == [(outside, "too-old:")]


def test_a_replica_counts_a_reading_inside_the_window_and_dead_letters_one_outside(pipeline):
    pipeline.start_worker(1)
    pipeline.wait_consuming(ingest_queue(1))
    window_start_ms = int(time.time() * 1000) - RETENTION_DAYS * DAY_MS
    device_id = str(uuid.uuid4())
    # A minute each side: the replica's clock moves on while the readings travel.
    inside = reading_body(window_start_ms + 60_000, device_id, 0.3)
    outside = reading_body(window_start_ms - 60_000, device_id, 0.4)
    pipeline.publish_raw(INGEST_EXCHANGE, ingest_routing_key(1), [inside, outside])

    dead: list = []
    wait_for(lambda: dead.extend(pipeline.drain(DEAD_LETTERS_QUEUE)) or dead, 20,
             "the old reading dead-lettered")
    wait_for(lambda: pipeline.query("SELECT COUNT(*) FROM readings")[0][0] == 1, 10, "the recent one stored")
    assert [body for _, body in dead] == [outside]
    assert dead[0][0].headers[DEAD_LETTER_REASON_HEADER].startswith("too-old:")
    assert pipeline.query("SELECT SUM(kwh) FROM hourly_consumption")[0][0] == Decimal("0.3")
    with pipeline.engine.connect() as connection:
        status = pipeline_status(pipeline.settings, connection)
    assert [replica.too_old for replica in status.replicas][0] == 1


# --- the migration from the wide layout (0002) --------------------------------------------------

WIDE_READING = ("INSERT INTO readings (device_id, timestamp_ms, hour_start, kwh, batch_id, replica) "
                "VALUES (:device_id, :timestamp_ms, :hour_start, :kwh, :batch_id, :replica)")


def all_rows(engine, *queries: str) -> list[list[tuple]]:
    """Return each query's rows, sorted (connections closed: an open one would block the DDL)."""
    with engine.connect() as connection:
        return [sorted(map(tuple, connection.execute(text(sql)))) for sql in queries]


def test_the_migration_converts_a_wide_table_with_data_and_keeps_every_total(migrated):
    settings = dataclasses.replace(migrated, db_prefix=f"{migrated.db_prefix}m{uuid.uuid4().hex[:6]}_")
    create_databases(settings, ("monitor",))
    config = alembic_config(settings, "monitor")
    try:
        command.upgrade(config, "0002")
        engine = create_monitor_engine(settings)
        devices = [str(uuid.uuid4()) for _ in range(3)]
        start = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
        start -= timedelta(days=200)
        rows = []
        for n in range(600):  # from 200 days ago to now: history and the window both hold readings
            moment = start + timedelta(hours=8 * n)
            timestamp_ms = int(moment.replace(tzinfo=UTC).timestamp() * 1000) + 1000 * n
            rows.append({"device_id": devices[n % 3], "timestamp_ms": timestamp_ms,
                         "hour_start": moment, "kwh": Decimal(f"0.{n % 97 + 1:02d}"),
                         "batch_id": uuid.uuid4().bytes, "replica": n % 3 + 1})
        with engine.begin() as connection:
            connection.execute(text(WIDE_READING), rows)
            connection.execute(text(
                "INSERT INTO hourly_consumption SELECT device_id, hour_start, SUM(kwh) FROM readings "
                "GROUP BY device_id, hour_start"))
            connection.execute(text(
                "INSERT INTO devices (id, name, owner_id, max_hourly_kwh, last_sequence) "
                "VALUES (:id, 'Meter', 7, 0.5, 1)"), [{"id": device} for device in devices])
            connection.execute(text(
                "INSERT INTO alerts (device_id, hour_start, owner_id, device_name, kwh, limit_kwh) "
                "VALUES (:id, :hour, 7, 'Meter', 0.9, 0.5)"), {"id": devices[0], "hour": start})
        totals_sql = "SELECT device_id, COUNT(*), SUM(kwh) FROM readings GROUP BY device_id"
        hourly_sql = "SELECT device_id, SUM(kwh) FROM hourly_consumption GROUP BY device_id"
        before = all_rows(engine, totals_sql, hourly_sql)
        engine.dispose()

        command.upgrade(config, "head")

        engine = create_monitor_engine(settings)
        assert all_rows(engine, totals_sql, hourly_sql) == before
        assert scalar(engine, "SELECT device_id FROM alerts") == devices[0]
        with engine.connect() as connection:
            assert sorted(connection.execute(text("SELECT id FROM devices")).scalars()) == sorted(devices)
        # A migrated reading delivered again is still a duplicate: it counts once.
        again = rows[-1]
        result = store_readings(engine, [Reading(again["timestamp_ms"], again["device_id"],
                                                 float(again["kwh"]))], replica=1)
        assert (result.inserted, result.duplicates) == (0, 1)
        engine.dispose()
    finally:
        drop_databases(settings, ("monitor",))
