"""Costs beside the consumption figures: each chart bar, today, this month.

The periods are the consumption views' own (monitor.consumption): a bar's cost
covers exactly the hours its kWh do, each hour priced by the tariff in force then.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
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


def devices_period_costs(connection: Connection, since_of: dict, bounds: list[datetime],
                         book: TariffBook) -> dict[str, list[Money]]:
    """Return each device's cost in each period [bounds[i], bounds[i + 1]), summed by the database.

    `since_of` maps each device id to the naive UTC time from which its hours are visible
    (None: all of them). The periods are cut further at tariff starts, where a tariff
    zone's UTC offset changes and where a device becomes visible; within such a piece an
    hour's price depends only on its UTC weekday and hour, so the database sums kWh per
    (device, piece, weekday, hour): at most 168 rows a piece instead of every hour (a
    year: 8,760; bench/costs.py measures it).
    """
    if not since_of:
        return {}
    start, end = bounds[0], bounds[-1]
    visible_from = {device: _next_hour(since.replace(tzinfo=UTC)) if since else start
                    for device, since in since_of.items()}
    cuts = {*bounds[1:-1], *visible_from.values(), *(_next_hour(tariff.starts_at) for tariff in book.tariffs)}
    for tariff_zone in {tariff.zone.key: tariff.zone for tariff in book.tariffs}.values():
        cuts.update(offset_changes(tariff_zone, start, end))
    pieces = [start, *sorted(cut for cut in cuts if start < cut < end)]
    inner = ", ".join(f":c{n}" for n in range(1, len(pieces))) or "0"
    rows = connection.execute(text(
        f"SELECT device_id, INTERVAL(hour_start + 0, {inner}) AS piece, WEEKDAY(hour_start), "  # noqa: S608
        "HOUR(hour_start), SUM(kwh) FROM hourly_consumption WHERE device_id IN :ids AND hour_start >= :start "
        "AND hour_start < :end GROUP BY device_id, piece, WEEKDAY(hour_start), HOUR(hour_start)"
    ).bindparams(bindparam("ids", expanding=True)),
        {"ids": list(since_of), "start": utc_naive(start), "end": utc_naive(end),
         **{f"c{n}": _as_number(utc_naive(pieces[n])) for n in range(1, len(pieces))}})
    # Per piece (a few dozen): its period, its tariff and the UTC offset of the tariff's zone.
    rules = []
    for piece_start in pieces:
        tariff = book.in_force(piece_start)
        shift = int(piece_start.astimezone(tariff.zone).utcoffset().total_seconds()) // 60 if tariff else 0
        rules.append((piece_start, bisect.bisect_right(bounds, piece_start) - 1, tariff, shift))
    sums = {device: [ZERO] * (len(bounds) - 1) for device in since_of}
    for device, piece, weekday, hour, kwh in rows:
        piece_start, period, tariff, shift = rules[min(piece, len(pieces) - 1)]
        if tariff is not None and piece_start >= visible_from[device]:
            # One offset holds for the whole piece: shift the UTC hour of the week to the local one.
            local = ((weekday * 24 + hour) * 60 + shift) % (7 * 24 * 60)
            sums[device][period] += kwh * tariff.price_at_local(local // (24 * 60), local % (24 * 60) // 60)
    return {device: [Money(amount, book.currency) for amount in amounts] for device, amounts in sums.items()}


def year_costs(connection: Connection, device_id: str, year: int, zone: ZoneInfo, book: TariffBook,
               since=None) -> list[Money]:
    """Return the cost of each local month of `year`."""
    months = [local_midnight_utc(first, zone) for first in month_starts(year)]
    return devices_period_costs(connection, {device_id: since}, months, book)[device_id]


def month_start(day: date, zone: ZoneInfo):
    """Return the aware UTC hour in which the local month of `day` starts."""
    return day_bounds(day.replace(day=1), zone)[0]


def month_kwh(stored: dict, day: date, zone: ZoneInfo) -> Decimal:
    """Return this month's kWh up to the end of `day` from {aware UTC hour: kWh}."""
    first, end = month_start(day, zone), day_bounds(day, zone)[1]
    return sum((kwh for hour, kwh in stored.items() if first <= hour < end), ZERO)


def today_and_month_costs(connection: Connection, since_of: dict, book: TariffBook, day: date,
                          zone: ZoneInfo) -> dict[str, dict]:
    """Return {device id: {"today_cost", "month_cost"}} of several devices in one query.

    `since_of` maps each device id to the naive UTC time from which the viewer sees it (None:
    always). Costs are None when no tariff exists.
    """
    if book.currency is None:
        return {device: {"today_cost": None, "month_cost": None} for device in since_of}
    today_start, today_end = day_bounds(day, zone)
    costs = devices_period_costs(connection, since_of, [month_start(day, zone), today_start, today_end], book)
    return {device: {"today_cost": today, "month_cost": before_today + today}
            for device, (before_today, today) in costs.items()}


def cost_json(money: Money | None) -> str | None:
    """Return a shown total for JSON: a decimal string rounded to the currency's minor unit."""
    return None if money is None else str(money.rounded)


def exact_amount(amount: Decimal) -> str:
    """Return an exact amount as a plain decimal string without trailing zeros (an hour's cost)."""
    return format(amount.normalize(), "f") if amount else "0"
