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


def test_a_conflicting_duplicate_keeps_the_first_value_and_is_returned(engine):
    device_id, stamp = str(uuid.uuid4()), epoch_ms(NOW)
    first = Reading(stamp, device_id, 0.25)
    store_readings(engine, [first], replica=1, now=NOW)
    later = Reading(stamp, device_id, 0.75)
    same = Reading(stamp, device_id, 0.25)
    result = store_readings(engine, [later, same], replica=2, now=NOW)
    assert result.conflicting == [later]
    assert (result.inserted, result.duplicates) == (0, 1)
    assert scalar(engine, "SELECT kwh FROM hourly_consumption") == Decimal("0.25")
    assert scalar(engine, "SELECT SUM(conflicting_duplicates) FROM replica_stats") == 1


def test_within_one_batch_the_first_value_of_a_key_stands(engine):
    device_id, stamp = str(uuid.uuid4()), epoch_ms(NOW)
    readings = [Reading(stamp, device_id, value) for value in (0.1, 0.2, 0.1)]
    result = store_readings(engine, readings, replica=1, now=NOW)
    assert result.conflicting == [readings[1]]
    assert (result.inserted, result.duplicates) == (1, 1)
    assert scalar(engine, "SELECT kwh FROM readings") == Decimal("0.1")


def test_conflicting_duplicates_across_concurrent_replicas_keep_one_value_each(engine):
    devices = [str(uuid.uuid4()) for _ in range(4)]
    start = epoch_ms(NOW.replace(minute=0))
    keys = [(start + n * 60_000, devices[n % 4]) for n in range(200)]
    conflicts: dict[int, list[Reading]] = {}

    def replica(number: int) -> None:
        # Each replica sends every key with a value of its own: all but one per key conflict.
        mine = [Reading(stamp, device_id, 0.01 * number) for stamp, device_id in keys]
        random.Random(number).shuffle(mine)
        conflicts[number] = []
        for index in range(0, len(mine), 50):
            conflicts[number] += store_readings(engine, mine[index:index + 50], replica=number,
                                                now=NOW).conflicting

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(1, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert scalar(engine, "SELECT COUNT(*) FROM readings") == 200
    assert sum(len(refused) for refused in conflicts.values()) == 2 * 200
    # The hourly totals hold exactly the values that were kept, none of the refused ones.
    assert scalar(engine, "SELECT SUM(kwh) FROM hourly_consumption") == \
        scalar(engine, "SELECT SUM(kwh) FROM readings")


def test_no_alert_for_an_hour_that_has_not_begun(engine):
    device_id = known_device(engine, limit="0.1")
    next_hour = epoch_ms(NOW.replace(minute=0) + timedelta(hours=1))
    store_readings(engine, [Reading(next_hour + 60_000, device_id, 0.5)], replica=1, now=NOW)
    assert scalar(engine, "SELECT COUNT(*) FROM alerts") == 0
    assert scalar(engine, "SELECT kwh FROM hourly_consumption") == Decimal("0.5")


def test_database_sessions_are_utc_whatever_the_server_zone(engine):
    with engine.connect() as connection:
        assert connection.execute(text("SELECT @@session.time_zone")).scalar() == "+00:00"
        assert connection.execute(text("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")).scalar() == 0


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


def owner_since(engine, device_id: str):
    return scalar(engine, "SELECT owner_since FROM devices WHERE id = :id", id=device_id)


def device_event(sequence: int, device_id: str, owner_id: int | None, at: str) -> Event:
    return Event(sequence, "device.updated", at, device=DeviceState(device_id, "Meter", owner_id, 1.0))


def test_a_device_changing_hands_is_the_new_owners_from_the_events_time(engine):
    device_id = str(uuid.uuid4())
    with engine.begin() as connection:
        apply_event(connection, device_event(1, device_id, None, "2026-11-01T08:00:00Z"))
        apply_event(connection, device_event(2, device_id, 7, "2026-11-02T08:00:00Z"))
    assert owner_since(engine, device_id) is None, "a first owner sees the device's whole history"
    with engine.begin() as connection:
        apply_event(connection, device_event(3, device_id, 7, "2026-11-03T08:00:00Z"))  # a rename, say
    assert owner_since(engine, device_id) is None
    with engine.begin() as connection:
        apply_event(connection, device_event(4, device_id, 8, "2026-11-04T10:30:00+02:00"))
    assert owner_since(engine, device_id) == datetime(2026, 11, 4, 8, 30)
    with engine.begin() as connection:
        apply_event(connection, device_event(5, device_id, None, "2026-11-05T08:00:00Z"))
        apply_event(connection, device_event(6, device_id, 9, "2026-11-06T08:00:00Z"))
    assert owner_since(engine, device_id) == datetime(2026, 11, 6, 8), "unassigned, then a new owner"


def test_a_deleted_users_devices_are_nobodys_from_the_deletion_on(engine):
    device_id = known_device(engine, owner_id=7)
    with engine.begin() as connection:
        apply_event(connection, Event(9, "user.deleted", "2026-11-07T08:00:00Z",
                                      user=UserState(7, "Gone", "client")))
    assert owner_since(engine, device_id) == datetime(2026, 11, 7, 8)
