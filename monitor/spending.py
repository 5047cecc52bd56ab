"""Costs beside the consumption figures: each chart bar, today, this month.

The periods are the consumption views' own (monitor.consumption): a bar's cost
covers exactly the hours its kWh do, each hour priced by the tariff in force then.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection

from monitor.consumption import (
    ZERO,
    _as_number,
    day_bounds,
    day_hours,
    hourly_between,
    local_midnight_utc,
    month_range,
    month_starts,
    utc_naive,
    visible_start,
    week_range,
)
from monitor.costs import Money, costs_by_day, hour_cost
from monitor.tariffs import TariffBook, load_tariffs


def chart_costs(connection: Connection, device_id: str, view: str, day: date, zone: ZoneInfo,
                since=None) -> dict:
    """Return the cost of each bar of a device's chart (`bar_costs`) and of the period (`total_cost`).

    Both are None when no tariff exists, so that pages show kWh alone.
    """
    book = load_tariffs(connection)
    if book.currency is None:
        return {"bar_costs": None, "total_cost": None}
    if view == "day":
        start, end = day_bounds(day, zone)
        stored = hourly_between(connection, device_id, start, end, since)
        bar_costs = [Money(hour_cost(book, hour, stored.get(hour, ZERO)), book.currency)
                     for hour in day_hours(day, zone)]
    elif view == "year":
        bar_costs = year_costs(connection, device_id, day.year, zone, book, since)
    else:
        first, last = week_range(day) if view == "week" else month_range(day)
        stored = hourly_between(connection, device_id, day_bounds(first, zone)[0], day_bounds(last, zone)[1],
                                since)
        days = [date.fromordinal(ordinal) for ordinal in range(first.toordinal(), last.toordinal() + 1)]
        bar_costs = costs_by_day(book, stored, days, zone)
    # The bars cover the period's hours exactly once: their exact costs add up to the period's.
    total = Money(sum((bar.amount for bar in bar_costs), ZERO), book.currency)
    return {"bar_costs": bar_costs, "total_cost": total}


def _next_hour(moment: datetime) -> datetime:
    """Return the first UTC hour starting at or after `moment` (an hour is priced by its start)."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if hour == moment else hour + timedelta(hours=1)


def offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Return the UTC hours in (start, end) from which `zone`'s UTC offset differs from the hour before."""
    def offset(moment: datetime):
        return moment.astimezone(zone).utcoffset()

    changes, day = [], start
    while day < end:
        following = min(day + timedelta(days=1), end)
        if offset(day) != offset(following):  # a change this day (never two): find its hour
            hour = day + timedelta(hours=1)
            while offset(hour) == offset(day):
                hour += timedelta(hours=1)
            changes.append(hour)
        day = following
    return [change for change in changes if start < change < end]


def period_costs(connection: Connection, device_id: str, bounds: list[datetime], book: TariffBook,
                 since=None) -> list[Money]:
    """Return a device's cost in each period [bounds[i], bounds[i + 1]), summed by the database.

    The periods are cut further at tariff starts and where a tariff zone's UTC offset
    changes; within such a piece an hour's price depends only on its UTC weekday and
    hour, so the database sums kWh per (piece, weekday, hour): at most 168 rows a piece
    instead of every hour (a year: 8,760; bench/costs.py measures it).
    """
    start, end = bounds[0], bounds[-1]
    cuts = set(bounds[1:-1])
    cuts.update(_next_hour(tariff.starts_at) for tariff in book.tariffs)
    for tariff_zone in {tariff.zone.key: tariff.zone for tariff in book.tariffs}.values():
        cuts.update(offset_changes(tariff_zone, start, end))
    pieces = [start, *sorted(cut for cut in cuts if start < cut < end)]
    inner = ", ".join(f":c{n}" for n in range(1, len(pieces))) or "0"
    rows = connection.execute(text(
        f"SELECT INTERVAL(hour_start + 0, {inner}) AS piece, WEEKDAY(hour_start), HOUR(hour_start), "  # noqa: S608
        "SUM(kwh) FROM hourly_consumption WHERE device_id = :device_id AND hour_start >= :start "
        "AND hour_start < :end GROUP BY piece, WEEKDAY(hour_start), HOUR(hour_start)"),
        {"device_id": device_id, "start": visible_start(start, since), "end": utc_naive(end),
         **{f"c{n}": _as_number(utc_naive(pieces[n])) for n in range(1, len(pieces))}})
    # Per piece (a few dozen): its period, its tariff and the UTC offset of the tariff's zone.
    rules = []
    for piece_start in pieces:
        tariff = book.in_force(piece_start)
        shift = int(piece_start.astimezone(tariff.zone).utcoffset().total_seconds()) // 60 if tariff else 0
        rules.append((bisect.bisect_right(bounds, piece_start) - 1, tariff, shift))
    sums = [ZERO] * (len(bounds) - 1)
    for piece, weekday, hour, kwh in rows:
        period, tariff, shift = rules[min(piece, len(pieces) - 1)]
        if tariff is not None:
            # One offset holds for the whole piece: shift the UTC hour of the week to the local one.
            local = ((weekday * 24 + hour) * 60 + shift) % (7 * 24 * 60)
            sums[period] += kwh * tariff.price_at_local(local // (24 * 60), local % (24 * 60) // 60)
    return [Money(amount, book.currency) for amount in sums]


def year_costs(connection: Connection, device_id: str, year: int, zone: ZoneInfo, book: TariffBook,
               since=None) -> list[Money]:
    """Return the cost of each local month of `year`."""
    months = [local_midnight_utc(first, zone) for first in month_starts(year)]
    return period_costs(connection, device_id, months, book, since)


def month_start(day: date, zone: ZoneInfo):
    """Return the aware UTC hour in which the local month of `day` starts."""
    return day_bounds(day.replace(day=1), zone)[0]


def today_and_month(connection: Connection, device_id: str, book: TariffBook, stored: dict, day: date,
                    zone: ZoneInfo, since=None) -> dict:
    """Return today's cost and this month's kWh and cost (`today_cost`, `month_kwh`, `month_cost`).

    `stored` ({aware UTC hour: kWh}) covers the month and gives its kWh; the costs are summed
    by the database (None when no tariff exists).
    """
    today_start, today_end = day_bounds(day, zone)
    first = month_start(day, zone)
    month_kwh = sum((kwh for hour, kwh in stored.items() if first <= hour < today_end), ZERO)
    if book.currency is None:
        return {"today_cost": None, "month_kwh": month_kwh, "month_cost": None}
    before_today, today = period_costs(connection, device_id, [first, today_start, today_end], book, since)
    return {"today_cost": today, "month_kwh": month_kwh, "month_cost": before_today + today}


def cost_json(money: Money | None) -> str | None:
    """Return a shown total for JSON: a decimal string rounded to the currency's minor unit."""
    return None if money is None else str(money.rounded)


def exact_amount(amount: Decimal) -> str:
    """Return an exact amount as a plain decimal string without trailing zeros (an hour's cost)."""
    return format(amount.normalize(), "f") if amount else "0"
