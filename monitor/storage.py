"""Storing a batch of readings: idempotent readings, exact hourly totals, alerts.

Everything for one batch happens in one transaction, so a batch counts fully or
not at all, and the caller acks its deliveries only after the commit:

1. `INSERT IGNORE` the readings, keyed by (timestamp_ms, device_id). A reading
   delivered twice — even to two replicas at once — is inserted by exactly one
   transaction; the other waits on the row lock and then ignores it. The first
   stored value stands: a reading with the same key but another value is a
   *conflicting duplicate*, returned to the caller to be dead-lettered.
2. Add to `hourly_consumption` only the readings this transaction inserted,
   with `kwh = kwh + VALUES(kwh)`: the row lock serialises replicas updating
   the same device-hour, the sum stays exact. Which rows are its own is found
   without marking them (a column on every row would cost bytes forever): the
   transaction starts with a consistent snapshot, and a consistent read sees
   the rows committed before that snapshot plus the transaction's own inserts,
   never those other transactions committed since (see `_insert_readings`).
3. For each touched device-hour now over its device's limit, `INSERT IGNORE`
   one alert row: unique per device-hour, so only the first crossing counts.
   An hour that has not begun yet (a clock a little ahead) raises none. A
   running hour still within its limit but projected over it gets one warning
   row instead (`monitor.warnings`).

Keys are sorted before every write so that concurrent batches lock rows in the
same order; a deadlock that still happens is retried.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from common.db import database_error_code, engine_options, utcnow
from common.logs import log_event
from common.messages import Reading
from common.settings import Settings
from monitor.warnings import WarningRule, raise_warnings

logger = logging.getLogger(__name__)

KWH_QUANTUM = Decimal("0.000001")
# Readings for hours older than this are history (a backfill, a late replay):
# they are stored and counted but raise no alert that nobody could act on.
ALERT_MAX_AGE = timedelta(hours=24)
DEADLOCK_ERRORS = (1213, 1205)  # deadlock found, lock wait timeout
MAX_ATTEMPTS = 8


def create_monitor_engine(settings: Settings) -> Engine:
    """Return an engine on the monitor database."""
    # Storing a batch relies on a snapshot that lasts the whole transaction.
    return create_engine(settings.database_url("monitor"), isolation_level="REPEATABLE READ",
                         **engine_options())


def reading_kwh(value: float) -> Decimal:
    """Return a reading's kWh as the exact decimal that is stored (6 places)."""
    return Decimal(repr(value)).quantize(KWH_QUANTUM, rounding=ROUND_HALF_UP)


def hour_start(timestamp_ms: int) -> datetime:
    """Return the start of the UTC clock hour of an epoch-milliseconds time (naive UTC)."""
    return datetime.fromtimestamp(timestamp_ms // 3_600_000 * 3600, tz=UTC).replace(tzinfo=None)


def hourly_sums(rows) -> dict[tuple[str, datetime], Decimal]:
    """Sum (device_id, hour_start, kwh) rows per device-hour."""
    sums: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
    for device_id, hour, kwh in rows:
        sums[(device_id, hour)] += kwh
    return dict(sums)


def over_limit(total: Decimal, limit: Decimal) -> bool:
    """Tell whether an hourly total exceeds the device's limit (equal is still fine)."""
    return total > limit


@dataclass
class BatchResult:
    """What storing one batch did."""

    received: int = 0
    inserted: int = 0
    unknown_device: int = 0
    alerts: int = 0
    warnings: int = 0
    # Readings whose key was stored with another value: the first value stands.
    conflicting: list[Reading] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted - len(self.conflicting)

    def add(self, other: BatchResult) -> None:
        """Add another part of the same batch to this result."""
        self.received += other.received
        self.inserted += other.inserted
        self.unknown_device += other.unknown_device
        self.alerts += other.alerts
        self.warnings += other.warnings
        self.conflicting += other.conflicting


# The hot statement goes to the driver directly with tuples: pymysql folds the
# batch into one multi-row INSERT, without SQLAlchemy's per-row parameter work.
INSERT_READINGS = "INSERT IGNORE INTO readings (timestamp_ms, device_id, kwh) VALUES (%s, %s, %s)"
START_WITH_SNAPSHOT = "START TRANSACTION WITH CONSISTENT SNAPSHOT"
BEFORE_READINGS = "SAVEPOINT before_readings"
UNDO_READINGS = "ROLLBACK TO SAVEPOINT before_readings"
SELECT_VISIBLE_KEYS = text(
    "SELECT timestamp_ms, device_id FROM readings WHERE (timestamp_ms, device_id) IN :keys"
).bindparams(bindparam("keys", expanding=True))
# A locking read: the latest committed value, which the snapshot may not show yet.
SELECT_STORED_KWH = text(
    "SELECT timestamp_ms, device_id, kwh FROM readings WHERE (timestamp_ms, device_id) IN :keys "
    "LOCK IN SHARE MODE"
).bindparams(bindparam("keys", expanding=True))
ADD_HOURLY = text(
    "INSERT INTO hourly_consumption (device_id, hour_start, kwh) VALUES (:device_id, :hour_start, :kwh) "
    "ON DUPLICATE KEY UPDATE kwh = kwh + VALUES(kwh)"
)
SELECT_DEVICES = text(
    "SELECT id, name, owner_id, max_hourly_kwh, deleted FROM devices WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True))
SELECT_HOURLY = text(
    "SELECT device_id, hour_start, kwh FROM hourly_consumption "
    "WHERE device_id IN :ids AND hour_start IN :hours"
).bindparams(bindparam("ids", expanding=True), bindparam("hours", expanding=True))
INSERT_ALERT = text(
    "INSERT IGNORE INTO alerts (device_id, hour_start, owner_id, device_name, kwh, limit_kwh) "
    "VALUES (:device_id, :hour_start, :owner_id, :device_name, :kwh, :limit_kwh)"
)
COUNT_REPLICA = text(
    "INSERT INTO replica_stats (replica, readings_stored, duplicates, conflicting_duplicates, "
    "unknown_device_readings, alerts_raised, updated_at) "
    "VALUES (:replica, :stored, :duplicates, :conflicting, :unknown, :alerts, UTC_TIMESTAMP(3)) "
    "ON DUPLICATE KEY UPDATE readings_stored = readings_stored + VALUES(readings_stored), "
    "duplicates = duplicates + VALUES(duplicates), "
    "conflicting_duplicates = conflicting_duplicates + VALUES(conflicting_duplicates), "
    "unknown_device_readings = unknown_device_readings + VALUES(unknown_device_readings), "
    "alerts_raised = alerts_raised + VALUES(alerts_raised), updated_at = VALUES(updated_at)"
)


COUNT_TOO_OLD = text(
    "INSERT INTO replica_stats (replica, too_old_readings, updated_at) "
    "VALUES (:replica, :count, UTC_TIMESTAMP(3)) "
    "ON DUPLICATE KEY UPDATE too_old_readings = too_old_readings + VALUES(too_old_readings), "
    "updated_at = VALUES(updated_at)"
)


def count_too_old(engine: Engine, replica: int, count: int) -> None:
    """Add readings refused as older than the retention window to their replica's counters."""
    with engine.begin() as connection:
        connection.execute(COUNT_TOO_OLD, {"replica": replica, "count": count})


def _reading_rows(readings: list[Reading]) -> list[tuple]:
    """Return one row per distinct reading key, with its first value, sorted by key (the lock order).

    Rows are (timestamp_ms, device_id, kwh): the first two are the key.
    """
    rows: dict[tuple[int, str], tuple] = {}
    for reading in readings:
        key = (reading.timestamp, reading.device_id)
        if key not in rows:
            rows[key] = (*key, reading_kwh(reading.measurement_value))
    return [rows[key] for key in sorted(rows)]


def _conflicting(connection: Connection, readings: list[Reading], rows: list[tuple],
                 stored: list[tuple]) -> list[Reading]:
    """Return the readings whose value differs from the one kept for their key.

    The kept value is the first one stored: by another transaction for the keys this
    one did not insert, or the batch's first reading of the key for those it did.
    """
    if len(readings) == len(rows) and len(stored) == len(rows):
        return []  # every key came once and was new: nothing to compare
    kept = {(row[0], row[1]): row[2] for row in rows}
    ours = {(row[0], row[1]) for row in stored}
    others = [key for key in kept if key not in ours]
    if others:
        # INSERT IGNORE waited for (and share-locked) each of these rows: they are committed.
        kept.update({(timestamp, device_id): kwh for timestamp, device_id, kwh in
                     connection.execute(SELECT_STORED_KWH, {"keys": others})})
    return [reading for reading in readings
            if kept[(reading.timestamp, reading.device_id)] != reading_kwh(reading.measurement_value)]


def _visible_keys(connection: Connection, rows: list[tuple]) -> set[tuple[int, str]]:
    """Return the keys of `rows` that the transaction's snapshot holds (a consistent read)."""
    return {tuple(key) for key in connection.execute(
        SELECT_VISIBLE_KEYS, {"keys": [(row[0], row[1]) for row in rows]})}


def _insert_readings(connection: Connection, rows: list[tuple]) -> list[tuple]:
    """Insert the rows whose key is new; return those this transaction inserted.

    The transaction started with a consistent snapshot. When only some rows were
    inserted (the rare case: duplicates), the insert is undone to a savepoint, the
    keys the snapshot already holds are read, and the rest inserted again; if some
    are still ignored (committed by others since), a consistent read shows which
    are this transaction's own: the others' rows are newer than the snapshot.
    """
    connection.exec_driver_sql(BEFORE_READINGS)
    inserted = connection.exec_driver_sql(INSERT_READINGS, rows).rowcount
    if inserted == len(rows):
        return rows
    if inserted == 0:
        return []
    connection.exec_driver_sql(UNDO_READINGS)
    before = _visible_keys(connection, rows)
    fresh = [row for row in rows if (row[0], row[1]) not in before]
    if not fresh:
        return []
    inserted = connection.exec_driver_sql(INSERT_READINGS, fresh).rowcount
    if inserted == len(fresh):
        return fresh
    ours = _visible_keys(connection, fresh) if inserted else set()
    return [row for row in fresh if (row[0], row[1]) in ours]


def _alertable_totals(connection: Connection, sums: dict, devices: dict, now: datetime) -> dict:
    """Return the totals after this batch of the touched device-hours that may alert or warn."""
    oldest = (now - ALERT_MAX_AGE).replace(minute=0, second=0, microsecond=0)
    candidates = {
        (device_id, hour) for device_id, hour in sums
        if device_id in devices and not devices[device_id].deleted
        and devices[device_id].owner_id is not None and oldest <= hour <= now
    }
    if not candidates:
        return {}
    rows = connection.execute(SELECT_HOURLY, {
        "ids": sorted({device_id for device_id, _ in candidates}),
        "hours": sorted({hour for _, hour in candidates}),
    })
    return {(device_id, hour): total for device_id, hour, total in rows if (device_id, hour) in candidates}


def _raise_alerts(connection: Connection, totals: dict, devices: dict) -> int:
    """Insert an alert for each device-hour over its limit; return how many are new."""
    alerts = [{"device_id": device_id, "hour_start": hour, "owner_id": devices[device_id].owner_id,
               "device_name": devices[device_id].name, "kwh": total,
               "limit_kwh": devices[device_id].max_hourly_kwh}
              for (device_id, hour), total in sorted(totals.items())
              if over_limit(total, devices[device_id].max_hourly_kwh)]
    if not alerts:
        return 0
    return connection.execute(INSERT_ALERT, alerts).rowcount


def _count(connection: Connection, replica: int, result: BatchResult) -> None:
    """Add a batch to its replica's counters (a row no other replica writes)."""
    connection.execute(COUNT_REPLICA, {"replica": replica, "stored": result.inserted,
                                       "duplicates": result.duplicates,
                                       "conflicting": len(result.conflicting),
                                       "unknown": result.unknown_device, "alerts": result.alerts})


def _store_once(connection: Connection, readings: list[Reading], replica: int, now: datetime,
                warning_rule: WarningRule) -> BatchResult:
    connection.exec_driver_sql(START_WITH_SNAPSHOT)
    rows = _reading_rows(readings)
    result = BatchResult(received=len(readings))
    stored = _insert_readings(connection, rows) if rows else []
    result.inserted = len(stored)
    result.conflicting = _conflicting(connection, readings, rows, stored)
    devices = {row.id: row for row in connection.execute(
        SELECT_DEVICES, {"ids": sorted({row[1] for row in stored})})} if stored else {}
    result.unknown_device = sum(1 for row in stored if row[1] not in devices)
    _count(connection, replica, result)
    if stored:
        # From here to the commit the device-hour rows are locked, and with round robin
        # every replica needs the same ones: whatever can run before runs before.
        sums = hourly_sums((device_id, hour_start(timestamp), kwh) for timestamp, device_id, kwh in stored)
        connection.execute(ADD_HOURLY, [
            {"device_id": device_id, "hour_start": hour, "kwh": kwh}
            for (device_id, hour), kwh in sorted(sums.items())
        ])
        totals = _alertable_totals(connection, sums, devices, now)
        result.alerts = _raise_alerts(connection, totals, devices)
        result.warnings = raise_warnings(connection, totals, devices, stored, now, warning_rule)
        if result.alerts:
            _count(connection, replica, BatchResult(alerts=result.alerts))
    return result


def store_readings(engine: Engine, readings: list[Reading], replica: int,
                   now: datetime | None = None, warning_rule: WarningRule | None = None) -> BatchResult:
    """Store a batch of valid readings in one transaction, retrying after a deadlock."""
    now = now or utcnow()
    warning_rule = warning_rule or WarningRule()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with engine.begin() as connection:
                return _store_once(connection, readings, replica, now, warning_rule)
        except OperationalError as error:
            code = database_error_code(error)
            if code not in DEADLOCK_ERRORS or attempt == MAX_ATTEMPTS:
                raise
            log_event(logger, "monitor.batch_retry", level=logging.WARNING, replica=replica,
                      attempt=attempt, code=code)
            # A little jitter keeps the two deadlocked batches from meeting again.
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")
