"""Retention of raw readings: `readings` partitions created days ahead, expired days dropped.

`readings` is RANGE-partitioned on `timestamp_ms`, one partition per UTC day
(`pYYYYMMDD`), after `p_history` (whatever is older) and before `p_future`
(MAXVALUE, so a reading never lacks a partition). Expiring a day is a
partition drop, not a DELETE. Hourly totals and alerts are never removed.

A day is dropped once all of it is older than the retention window by a
margin: a replica whose clock runs a little behind the maintenance process
still refuses (dead-letters as too-old) every reading of a dropped day, so a
reading whose duplicate check is gone can never be counted again.

One process at a time does the work (a named lock per database); running it
twice, at once or one after the other, changes nothing more.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from common.health import HEALTH
from common.logs import log_event
from common.settings import Settings

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
DAYS_AHEAD = 7
# Larger than any clock difference between a replica and this process (the replicas
# refuse readings from the future beyond EMS_MAX_CLOCK_SKEW_SECONDS, 5 minutes by default).
DROP_MARGIN_MS = 3_600_000
INTERVAL_SECONDS = 3600
FUTURE = "p_future"
# DDL waits for running transactions on the table; meanwhile every new one queues behind
# it. Give up quickly and try again at the next run instead of stalling the replicas.
LOCK_WAIT_SECONDS = 10


@dataclass(frozen=True)
class Partition:
    name: str
    bound: int | None  # exclusive upper bound (epoch ms); None for MAXVALUE


@dataclass
class MaintenanceResult:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def retention_cutoff_ms(now_ms: int, retention_days: int) -> int:
    """Return the oldest timestamp still inside the retention window."""
    return now_ms - retention_days * DAY_MS


TOO_OLD = "too-old:"


def too_old_reason(timestamp_ms: int, retention_days: int) -> str:
    """Return why a reading older than the retention window is refused (the dead letter's reason)."""
    stamped = datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
    return (f"{TOO_OLD} stamped {stamped}, before the {retention_days}-day retention window of raw "
            "readings: it can no longer be checked for duplicates, so it is not counted")


def partition_name(day_start_ms: int) -> str:
    """Return the name of the partition holding the UTC day that starts at `day_start_ms`."""
    return f"p{datetime.fromtimestamp(day_start_ms / 1000, UTC):%Y%m%d}"


def readings_partitions(connection: Connection) -> list[Partition]:
    """Return the partitions of `readings` in order."""
    rows = connection.execute(text(
        "SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'readings' ORDER BY PARTITION_ORDINAL_POSITION"))
    return [Partition(name, None if bound == "MAXVALUE" else int(bound)) for name, bound in rows]


def days_to_create(partitions: list[Partition], now_ms: int, retention_days: int,
                   days_ahead: int = DAYS_AHEAD) -> list[int]:
    """Return the start of each day to split off `p_future`, through `days_ahead` days after today."""
    last_bound = max(p.bound for p in partitions if p.bound is not None)
    first_kept = retention_cutoff_ms(now_ms, retention_days) // DAY_MS * DAY_MS
    # A day still missing before the window is never created only to be dropped: the first
    # new partition reaches down to the last bound anyway.
    start = max(last_bound, first_kept)
    end = (now_ms // DAY_MS + days_ahead + 1) * DAY_MS
    return list(range(start // DAY_MS * DAY_MS, end, DAY_MS)) if start < end else []


def expired_partitions(partitions: list[Partition], now_ms: int, retention_days: int) -> list[str]:
    """Return the partitions whose every reading is older than the window, by the margin."""
    limit = retention_cutoff_ms(now_ms, retention_days) - DROP_MARGIN_MS
    return [p.name for p in partitions if p.bound is not None and p.bound <= limit]


def maintain_partitions(connection: Connection, retention_days: int, now_ms: int,
                        days_ahead: int = DAYS_AHEAD) -> MaintenanceResult:
    """Create the missing days ahead, then drop the expired ones (DDL: each commits by itself)."""
    result = MaintenanceResult()
    days = days_to_create(readings_partitions(connection), now_ms, retention_days, days_ahead)
    if days:
        result.created = [partition_name(day) for day in days]
        parts = [f"PARTITION {name} VALUES LESS THAN ({day + DAY_MS})"
                 for name, day in zip(result.created, days, strict=True)]
        connection.execute(text(f"ALTER TABLE readings REORGANIZE PARTITION {FUTURE} INTO "  # noqa: S608
                                f"({', '.join(parts)}, PARTITION {FUTURE} VALUES LESS THAN MAXVALUE)"))
    # Computed after creating: the days just created ahead keep the table from ever
    # losing its last bounded partition.
    result.dropped = expired_partitions(readings_partitions(connection), now_ms, retention_days)
    if result.dropped:
        connection.execute(text(f"ALTER TABLE readings DROP PARTITION {', '.join(result.dropped)}"))
    return result


def lock_name(settings: Settings) -> str:
    """Return the server-wide lock that lets one maintenance process per database work at a time."""
    return f"{settings.database_name('monitor')}.readings-maintenance"


def run_once(engine: Engine, settings: Settings, now_ms: int | None = None) -> MaintenanceResult | None:
    """Maintain the partitions unless another process is at it (then return None)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if not connection.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": lock_name(settings)}).scalar():
            log_event(logger, "monitor.maintenance_skipped", reason="another process holds the lock")
            return None
        try:
            connection.execute(text(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"))
            result = maintain_partitions(connection, settings.raw_retention_days, now_ms)
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name(settings)})
    log_event(logger, "monitor.partitions_maintained", created=len(result.created),
              dropped=",".join(result.dropped) or "-", retention_days=settings.raw_retention_days)
    return result


class PartitionMaintainer:
    """The `monitor_maintenance` process: maintain the partitions now and every hour."""

    def __init__(self, settings: Settings, engine: Engine, interval_seconds: float = INTERVAL_SECONDS):
        self.settings = settings
        self.engine = engine
        self.interval_seconds = interval_seconds
        self.stopping = False

    def stop(self) -> None:
        """Leave after the current run (called from a signal handler)."""
        self.stopping = True

    def run(self) -> None:
        """Maintain until stopped; a failed run is logged and tried again at the next one."""
        while not self.stopping:
            try:
                run_once(self.engine, self.settings)
                HEALTH.set_ready(True)
            except DBAPIError as error:
                log_event(logger, "monitor.maintenance_failed", level=logging.WARNING,
                          error=type(error).__name__, detail=str(error.orig)[:200])
            deadline = time.monotonic() + self.interval_seconds
            while not self.stopping and time.monotonic() < deadline:
                HEALTH.turned()
                time.sleep(min(1.0, deadline - time.monotonic()))
