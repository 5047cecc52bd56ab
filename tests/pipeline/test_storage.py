"""Storing readings on the real MariaDB: idempotence, exact sums under concurrency, alert rules."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from common.messages import DeviceState, Event, Reading, UserState
from monitor.events import apply_event
from monitor.storage import create_monitor_engine, store_readings
from tests.pipeline.conftest import MONITOR_TABLES

NOW = datetime(2026, 11, 26, 12, 30)


def epoch_ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds() * 1000)


@pytest.fixture
def engine(migrated):
    engine = create_monitor_engine(migrated)
    with engine.begin() as connection:
        for table in MONITOR_TABLES:
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names
    yield engine
    engine.dispose()


def scalar(engine, sql: str, **parameters):
    with engine.connect() as connection:
        return connection.execute(text(sql), parameters).scalar()


def known_device(engine, limit: str = "1.0", owner_id: int | None = 7, deleted: bool = False) -> str:
    device_id = str(uuid.uuid4())
    with engine.begin() as connection:
        apply_event(connection, Event(1, "device.created", "2026-01-01T00:00:00Z",
                                      device=DeviceState(device_id, "Meter", owner_id, float(limit))))
        if deleted:
            apply_event(connection, Event(2, "device.deleted", "2026-01-01T00:00:00Z",
                                          device=DeviceState(device_id, "Meter", owner_id, float(limit))))
    return device_id


def test_a_reading_stored_twice_counts_once(engine):
    reading = Reading(epoch_ms(NOW), str(uuid.uuid4()), 0.25)
    first = store_readings(engine, [reading, reading], replica=1, now=NOW)
    second = store_readings(engine, [reading], replica=2, now=NOW)
    assert (first.inserted, first.duplicates, second.inserted) == (1, 1, 0)
    assert scalar(engine, "SELECT kwh FROM hourly_consumption") == Decimal("0.25")


def test_concurrent_replicas_with_overlapping_batches_keep_totals_exact(engine):
    devices = [str(uuid.uuid4()) for _ in range(5)]
    start = epoch_ms(NOW.replace(minute=0))
    readings = [Reading(start + n * 60_000, devices[n % 5], round(random.uniform(0, 0.5), 4))
                for n in range(600)]
    expected = sum(Decimal(str(r.measurement_value)) for r in readings)

    def replica(number: int) -> None:
        # Every replica gets every reading, in its own order: maximal contention on 5 device-hours.
        mine = readings[:]
        random.Random(number).shuffle(mine)
        for index in range(0, len(mine), 100):
            store_readings(engine, mine[index:index + 100], replica=number, now=NOW)

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert scalar(engine, "SELECT COUNT(*) FROM readings") == 600
    assert scalar(engine, "SELECT SUM(kwh) FROM hourly_consumption") == expected
    assert scalar(engine, "SELECT SUM(readings_stored) FROM replica_stats") == 600
    assert scalar(engine, "SELECT SUM(duplicates) FROM replica_stats") == 3 * 600


def test_the_first_crossing_of_the_limit_raises_one_alert_with_the_total_then(engine):
    device_id = known_device(engine, limit="1.0")
    start = epoch_ms(NOW.replace(minute=0))
    for n in range(7):
        store_readings(engine, [Reading(start + (n + 1) * 60_000, device_id, 0.2)], replica=1, now=NOW)
    with engine.connect() as connection:
        alerts = connection.execute(text("SELECT kwh, limit_kwh, owner_id FROM alerts")).all()
    assert alerts == [(Decimal("1.2"), Decimal("1.0"), 7)]


def test_reaching_the_limit_exactly_raises_nothing(engine):
    device_id = known_device(engine, limit="1.0")
    start = epoch_ms(NOW.replace(minute=0))
    store_readings(engine, [Reading(start + n * 60_000, device_id, 0.2) for n in range(5)], 1, now=NOW)
    assert scalar(engine, "SELECT COUNT(*) FROM alerts") == 0


@pytest.mark.parametrize("case", ["unknown", "deleted", "unassigned", "history"])
def test_no_alert_for_unknown_deleted_unassigned_devices_or_old_history(engine, case):
    device_id = {
        "unknown": lambda: str(uuid.uuid4()),
        "deleted": lambda: known_device(engine, deleted=True),
        "unassigned": lambda: known_device(engine, owner_id=None),
        "history": lambda: known_device(engine),
    }[case]()
    hour = NOW - timedelta(days=3) if case == "history" else NOW
    start = epoch_ms(hour.replace(minute=0))
    result = store_readings(engine, [Reading(start + n * 60_000, device_id, 0.5) for n in range(4)], 1,
                            now=NOW)
    assert result.inserted == 4
    assert result.unknown_device == (4 if case == "unknown" else 0)
    assert scalar(engine, "SELECT COUNT(*) FROM alerts") == 0


def test_a_deleted_user_leaves_their_devices_without_an_owner(engine):
    device_id = known_device(engine, owner_id=7)
    with engine.begin() as connection:
        apply_event(connection, Event(9, "user.deleted", "2026-01-01T00:00:00Z",
                                      user=UserState(7, "Gone", "client")))
    assert scalar(engine, "SELECT owner_id FROM devices WHERE id = :id", id=device_id) is None
