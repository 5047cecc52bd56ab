"""Consumption in the viewer's time zone: day hours (DST-aware), daily totals, summaries.

Hourly buckets are UTC clock hours in the database. A local day is the run of
UTC hours whose start falls in it (from local midnight, inclusive, to the next
local midnight): 24 hours usually, 23 on the day clocks spring forward and 25
when they fall back; the hour that repeats is shown twice, each with its UTC
offset. In zones whose offset is not a whole hour (Asia/Kolkata +5:30,
Asia/Kathmandu +5:45) a stored hour straddles two local hours; it belongs to
the local day its start falls in and is shown at its local start (00:30,
01:30, ... 23:30 in Kolkata). So the day chart, the daily total, the week,
month and year totals all take exactly the same hours, and consecutive days
tile the UTC hours without gap or overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

ZERO = Decimal("0")


@dataclass(frozen=True)
class HourValue:
    """One hour of a day chart."""

    start: datetime  # aware, in the viewer's zone
    kwh: Decimal
    # The local hour happens twice this day (clocks went back): tell them apart by offset.
    repeated: bool = False

    @property
    def label(self) -> str:
        """Return the local start, e.g. "14:00", or "03:00 UTC+3" for an hour that repeats."""
        clock = self.start.strftime("%H:%M")
        return f"{clock} {utc_offset_label(self.start)}" if self.repeated else clock


def hour_end(hour: HourValue) -> datetime:
    """Return when an hour ends, in its zone (an hour later in UTC, whatever the clocks did)."""
    return (hour.start.astimezone(UTC) + timedelta(hours=1)).astimezone(hour.start.tzinfo)


def utc_offset_label(moment: datetime) -> str:
    """Return an aware moment's UTC offset as people write it: "UTC+3", "UTC-4", "UTC+5:30"."""
    minutes = round(moment.utcoffset().total_seconds() // 60)
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


@dataclass(frozen=True)
class DayValue:
    """One day's total."""

    day: date
    kwh: Decimal


def utc_naive(moment: datetime) -> datetime:
    """Return an aware datetime as the naive UTC value stored in the database."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def local_midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    """Return the first UTC hour that starts at or after the local `day`'s midnight (aware).

    In whole-hour zones that is midnight itself; in Kolkata (+5:30) it is the hour
    starting at 00:30 local, so each stored hour belongs to the day its start falls in.
    """
    midnight = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    hour = midnight.replace(minute=0, second=0, microsecond=0)
    return hour if hour == midnight else hour + timedelta(hours=1)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the [start, end) UTC hours of a local day (aware)."""
    return local_midnight_utc(day, zone), local_midnight_utc(day + timedelta(days=1), zone)


def day_hours(day: date, zone: ZoneInfo) -> list[datetime]:
    """Return the UTC hour starts of a local day: 23, 24 or 25 of them."""
    start, end = day_bounds(day, zone)
    return [start + timedelta(hours=n) for n in range(int((end - start).total_seconds() // 3600))]


def today(zone: ZoneInfo, now: datetime | None = None) -> date:
    """Return the current date in `zone`."""
    return (now or datetime.now(UTC)).astimezone(zone).date()


def visible_start(start: datetime, since: datetime | None) -> datetime:
    """Return the naive UTC start of a range, moved up to `since` (naive UTC) when that is later.

    Hours are whole: the hour in which a device changed hands is hidden from the new
    owner, since part of it was the previous owner's.
    """
    start = utc_naive(start)
    return start if since is None or since <= start else since


HOURLY_BETWEEN = text(
    "SELECT hour_start, kwh FROM hourly_consumption "
    "WHERE device_id = :device_id AND hour_start >= :start AND hour_start < :end ORDER BY hour_start"
)


def hourly_between(connection: Connection, device_id: str, start: datetime, end: datetime,
                   since: datetime | None = None) -> dict:
    """Return {aware UTC hour start: kWh} of a device for the hours in [start, end), none before `since`."""
    rows = connection.execute(HOURLY_BETWEEN, {"device_id": device_id, "start": visible_start(start, since),
                                               "end": utc_naive(end)})
    return {hour.replace(tzinfo=UTC): kwh for hour, kwh in rows}


HOURLY_OF_DEVICES_BETWEEN = text(
    "SELECT device_id, hour_start, kwh FROM hourly_consumption "
    "WHERE device_id IN :ids AND hour_start >= :start AND hour_start < :end"
).bindparams(bindparam("ids", expanding=True))


def hourly_of_devices_between(connection: Connection, device_ids: list[str], start: datetime,
                              end: datetime) -> dict[str, dict]:
    """Return {device id: {aware UTC hour start: kWh}} of several devices in one query."""
    found: dict[str, dict] = {device_id: {} for device_id in device_ids}
    if device_ids:
        for device_id, hour, kwh in connection.execute(HOURLY_OF_DEVICES_BETWEEN, {
                "ids": device_ids, "start": utc_naive(start), "end": utc_naive(end)}):
            found[device_id][hour.replace(tzinfo=UTC)] = kwh
    return found


def hours_of_day(stored: dict, day: date, zone: ZoneInfo) -> list[HourValue]:
    """Return every hour of a local day from {UTC hour: kWh} (0 where nothing was measured)."""
    starts = [hour.astimezone(zone) for hour in day_hours(day, zone)]
    clocks = [start.strftime("%H:%M") for start in starts]
    return [HourValue(start, stored.get(start.astimezone(UTC), ZERO), repeated=clocks.count(clock) > 1)
            for start, clock in zip(starts, clocks, strict=True)]


def hourly_for_day(connection: Connection, device_id: str, day: date, zone: ZoneInfo,
                   since: datetime | None = None) -> list[HourValue]:
    """Return every hour of a local day with its consumption (0 where nothing was measured)."""
    start, end = day_bounds(day, zone)
    return hours_of_day(hourly_between(connection, device_id, start, end, since), day, zone)


def daily_totals(connection: Connection, device_id: str, first: date, last: date,
                 zone: ZoneInfo, since: datetime | None = None) -> list[DayValue]:
    """Return the total of each local day from `first` to `last` inclusive."""
    start, _ = day_bounds(first, zone)
    _, end = day_bounds(last, zone)
    return days_of(hourly_between(connection, device_id, start, end, since), first, last, zone)


def days_of(stored: dict, first: date, last: date, zone: ZoneInfo) -> list[DayValue]:
    """Return the total of each local day from `first` to `last` from {UTC hour: kWh}."""
    totals: dict[date, Decimal] = {}
    for hour, kwh in stored.items():
        local_day = hour.astimezone(zone).date()
        totals[local_day] = totals.get(local_day, ZERO) + kwh
    days = (last - first).days + 1
    return [DayValue(first + timedelta(days=n), totals.get(first + timedelta(days=n), ZERO))
            for n in range(days)]


def projected_day_total(stored: dict, day: date, zone: ZoneInfo, now: datetime, past_days: int) -> Decimal:
    """Return `day`'s total so far plus what the `past_days` before it used, on average, in its hours to come.

    People use little at night and most in the evening, so a morning's rate scaled
    to the whole day would still plunge; the days before know the shape of a day.
    Hours are matched by their place in the day (a DST day shifts them by one).
    """
    hours = hours_of_day(stored, day, zone)
    begun = sum(1 for hour in hours if hour.start <= now)
    so_far = day_total(hours[:begun])
    earlier = [hours_of_day(stored, day - timedelta(days=back), zone) for back in range(1, past_days + 1)]
    to_come = sum((day_total(past[begun:]) for past in earlier), ZERO) / max(len(earlier), 1)
    return (so_far + to_come).quantize(Decimal("0.001"))


def day_total(hours: list[HourValue]) -> Decimal:
    """Return the sum of a day's hours."""
    return sum((hour.kwh for hour in hours), ZERO)


def peak_hour(hours: list[HourValue]) -> HourValue | None:
    """Return the hour with the most consumption, or None for a day without any."""
    peak = max(hours, key=lambda hour: hour.kwh, default=None)
    return peak if peak is not None and peak.kwh > 0 else None


def week_range(day: date) -> tuple[date, date]:
    """Return the Monday-to-Sunday week around `day`."""
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


def month_range(day: date) -> tuple[date, date]:
    """Return the first and last day of the month of `day`."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


@dataclass(frozen=True)
class Device:
    """The monitor's copy of a device."""

    id: str
    name: str
    owner_id: int | None
    max_hourly_kwh: Decimal
    deleted: bool
    # Naive UTC: since when the owner has it, after a change of hands (None: always theirs).
    owner_since: datetime | None = None


DEVICE_COLUMNS = "id, name, owner_id, max_hourly_kwh, deleted, owner_since"


def _device(row) -> Device:
    return Device(*row[:4], deleted=bool(row[4]), owner_since=row[5])


def find_device(connection: Connection, device_id: str) -> Device | None:
    """Return a device by id, or None."""
    row = connection.execute(text(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id = :id"),  # noqa: S608
                             {"id": device_id}).first()
    return _device(row) if row else None


def devices_of(connection: Connection, owner_id: int) -> list[Device]:
    """Return a user's current devices, by name."""
    rows = connection.execute(text(
        f"SELECT {DEVICE_COLUMNS} FROM devices WHERE owner_id = :owner AND NOT deleted "  # noqa: S608
        "ORDER BY name, id"), {"owner": owner_id})
    return [_device(row) for row in rows]


def all_devices(connection: Connection) -> list[Device]:
    """Return every current device, by name."""
    rows = connection.execute(text(
        f"SELECT {DEVICE_COLUMNS} FROM devices WHERE NOT deleted ORDER BY name, id"))  # noqa: S608
    return [_device(row) for row in rows]


@dataclass(frozen=True)
class MonthValue:
    """One month of a year chart: its total and how many of its hours were over the limit."""

    first: date
    kwh: Decimal
    hours_over: int

    @property
    def label(self) -> str:
        return self.first.strftime("%b")


def month_starts(year: int) -> list[date]:
    """Return the first day of each month of `year`, then of the next year (13 dates)."""
    return [date(year, month, 1) for month in range(1, 13)] + [date(year + 1, 1, 1)]


def _as_number(moment: datetime) -> int:
    """Return a naive UTC datetime as the YYYYMMDDhhmmss number that `DATETIME + 0` gives in SQL."""
    return int(moment.strftime("%Y%m%d%H%M%S"))


def monthly_totals(connection: Connection, device_id: str, year: int, zone: ZoneInfo,
                   limit: Decimal, since: datetime | None = None) -> list[MonthValue]:
    """Return each local month's total of a year and its hours over `limit`, summed by the database.

    Months run from local midnight to local midnight (DST included), so their UTC
    bounds are clock hours; INTERVAL() puts each hour in its month in one pass
    over the device's year of hourly rows (measured in bench/history.py).
    """
    firsts = month_starts(year)
    bounds = [utc_naive(local_midnight_utc(first, zone)) for first in firsts]
    inner = ", ".join(f":b{n}" for n in range(1, 12))
    rows = connection.execute(text(
        f"SELECT INTERVAL(hour_start + 0, {inner}) AS month, SUM(kwh), SUM(kwh > :limit) "  # noqa: S608
        "FROM hourly_consumption WHERE device_id = :device_id AND hour_start >= :start AND hour_start < :end "
        "GROUP BY month"),
        {"device_id": device_id, "start": visible_start(bounds[0], since), "end": bounds[12], "limit": limit,
         **{f"b{n}": _as_number(bounds[n]) for n in range(1, 12)}})
    found = {month: (kwh, int(over)) for month, kwh, over in rows}
    return [MonthValue(firsts[n], *found.get(n, (ZERO, 0))) for n in range(12)]


def most_hours_over(months: list[MonthValue]) -> MonthValue | None:
    """Return the month with the most hours over the limit (the earliest of a tie), or None."""
    worst = max(months, key=lambda month: month.hours_over, default=None)
    return worst if worst is not None and worst.hours_over > 0 else None
