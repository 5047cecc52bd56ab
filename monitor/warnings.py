"""Early warnings: project a running hour's total and warn once before it passes the limit.

The rule (one place, `projected_crossing`): while a device's clock hour is
running and its total so far is within the limit, the rate so far is the total
over the time from the hour's start to the newest reading of that hour (data
time, so a replica catching up on a backlog projects from the readings, not from
its own clock). At that rate the total reaches the limit at
`hour_start + elapsed × limit / total`; when that instant falls inside the hour
(the projection for the whole hour is over the limit), the device gets a
warning. Only after enough of the hour to mean something: at least
`min_minutes` of data time and `min_readings` readings (EMS_WARNING_MIN_MINUTES,
10, and EMS_WARNING_MIN_READINGS, 3). The time the warning announces is when the
total reaches the limit from the newest reading on, at the hour's average rate
or, when the last ten minutes ran faster (a surge), at theirs: the average alone
would announce about the hour's end for any consumption that rises gradually.

A warning is a row of `alerts` with kind `warning`, written in the transaction
that stored the readings and published by the same exactly-once sweep
(`monitor.alerts`); the unique key (device, hour, kind) keeps it to one per
device-hour. None is written for an hour already over its limit, nor after
that hour's alert (a limit raised after the alert could otherwise bring one).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from common.settings import Settings

HOUR = timedelta(hours=1)
HOUR_MS = 3_600_000

SELECT_RAISED = text(
    "SELECT device_id FROM alerts WHERE device_id IN :ids AND hour_start = :hour"
).bindparams(bindparam("ids", expanding=True))
RECENT_MS = 10 * 60_000
# The readings table's key starts with the timestamp: the hour's range, then the devices.
SELECT_HOUR_READINGS = text(
    "SELECT device_id, timestamp_ms, kwh FROM readings "
    "WHERE timestamp_ms >= :start_ms AND timestamp_ms < :end_ms AND device_id IN :ids"
).bindparams(bindparam("ids", expanding=True))
# NOT EXISTS reads the latest committed alert (INSERT ... SELECT locks what it reads).
INSERT_WARNING = text(
    "INSERT IGNORE INTO alerts (device_id, hour_start, kind, owner_id, device_name, kwh, limit_kwh, due_at) "
    "SELECT :device_id, :hour_start, 'warning', :owner_id, :device_name, :kwh, :limit_kwh, :due_at FROM DUAL "
    "WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE device_id = :device_id AND hour_start = :hour_start "
    "AND kind = 'alert')"
)


@dataclass(frozen=True)
class WarningRule:
    """How much of an hour must be known before its total is projected."""

    min_minutes: float = 10.0
    min_readings: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> WarningRule:
        """Return the rule set by EMS_WARNING_MIN_MINUTES and EMS_WARNING_MIN_READINGS."""
        return cls(settings.warning_min_minutes, settings.warning_min_readings)


def _epoch_ms(moment: datetime) -> int:
    """Return a naive UTC datetime as epoch milliseconds."""
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def projected_crossing(total: Decimal, limit: Decimal, hour: datetime, latest_ms: int, readings: int,
                       rule: WarningRule, recent_kwh: Decimal = Decimal(0)) -> datetime | None:
    """Return when the hour's total passes `limit` at its rate so far, or None if it warns of nothing.

    `hour` is the hour's start (naive UTC), `latest_ms` the newest reading's time,
    `readings` how many the hour has and `recent_kwh` what those of its last ten
    minutes (up to `latest_ms`) add up to; the result is naive UTC, to the second.
    """
    if total <= 0 or total > limit or readings < rule.min_readings:
        return None
    hour_ms = _epoch_ms(hour)
    elapsed_ms = latest_ms - hour_ms
    if elapsed_ms <= 0 or elapsed_ms < rule.min_minutes * 60_000:
        return None
    if elapsed_ms * limit / total >= HOUR_MS:
        return None  # at the hour's average rate it ends within its limit
    rate = max(total / elapsed_ms, recent_kwh / min(RECENT_MS, elapsed_ms))  # kWh per ms
    crossing_ms = latest_ms + int((limit - total) / rate)
    return datetime.fromtimestamp(crossing_ms // 1000, tz=UTC).replace(tzinfo=None)


def raise_warnings(connection: Connection, totals: dict, devices: dict, stored: list[tuple],
                   now: datetime, rule: WarningRule) -> int:
    """Insert a warning for each device whose running hour is projected over its limit; return how many.

    `totals` are the touched device-hours' totals after this batch, `stored` the
    batch's inserted (timestamp_ms, device_id, kwh) rows.
    """
    running = now.replace(minute=0, second=0, microsecond=0)
    batch_latest: dict[str, int] = {}
    for timestamp, device_id, _ in stored:
        batch_latest[device_id] = max(timestamp, batch_latest.get(device_id, 0))
    # The batch's newest reading is at most the hour's newest: a projection from it is an
    # upper bound, so a device that fails it needs no look at the readings table.
    candidates = sorted(
        device_id for (device_id, hour), total in totals.items()
        if hour == running and device_id in batch_latest
        and projected_crossing(total, devices[device_id].max_hourly_kwh, hour, batch_latest[device_id],
                               rule.min_readings, rule) is not None)
    if candidates:
        raised = {row.device_id for row in connection.execute(SELECT_RAISED, {"ids": candidates,
                                                                                "hour": running})}
        candidates = [device_id for device_id in candidates if device_id not in raised]
    if not candidates:
        return 0
    start_ms = _epoch_ms(running)
    # The snapshot's readings with this transaction's own (all of the hour but what other
    # replicas committed since the snapshot: those count from the next batch on).
    hour_readings = connection.execute(SELECT_HOUR_READINGS, {"ids": candidates, "start_ms": start_ms,
                                                              "end_ms": start_ms + HOUR_MS}).all()
    counts = Counter(device_id for device_id, _, _ in hour_readings)
    latest = dict(batch_latest)
    for device_id, timestamp, _ in hour_readings:
        latest[device_id] = max(timestamp, latest[device_id])
    recent: dict[str, Decimal] = defaultdict(Decimal)
    for device_id, timestamp, kwh in hour_readings:
        if timestamp > latest[device_id] - RECENT_MS:
            recent[device_id] += kwh
    warnings = []
    for device_id in candidates:
        device, total = devices[device_id], totals[(device_id, running)]
        due_at = projected_crossing(total, device.max_hourly_kwh, running, latest[device_id],
                                    counts[device_id], rule, recent[device_id])
        if due_at is not None:
            warnings.append({"device_id": device_id, "hour_start": running, "owner_id": device.owner_id,
                             "device_name": device.name, "kwh": total, "limit_kwh": device.max_hourly_kwh,
                             "due_at": due_at})
    if not warnings:
        return 0
    return sum(connection.execute(INSERT_WARNING, warning).rowcount for warning in warnings)
