"""Costs beside the consumption figures: each chart bar, today, this month.

The periods are the consumption views' own (monitor.consumption): a bar's cost
covers exactly the hours its kWh do, each hour priced by the tariff in force then.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from monitor.consumption import (
    ZERO,
    day_bounds,
    day_hours,
    hourly_between,
    month_range,
    month_starts,
    week_range,
)
from monitor.costs import Money, costs_by_day, costs_by_month, hour_cost, total_cost
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
        firsts = month_starts(day.year)
        stored = hourly_between(connection, device_id, day_bounds(firsts[0], zone)[0],
                                day_bounds(firsts[12], zone)[0], since)
        bar_costs = costs_by_month(book, stored, firsts[:12], zone)
    else:
        first, last = week_range(day) if view == "week" else month_range(day)
        stored = hourly_between(connection, device_id, day_bounds(first, zone)[0], day_bounds(last, zone)[1],
                                since)
        days = [date.fromordinal(ordinal) for ordinal in range(first.toordinal(), last.toordinal() + 1)]
        bar_costs = costs_by_day(book, stored, days, zone)
    # The bars cover the period's hours exactly once: their exact costs add up to the period's.
    total = Money(sum((bar.amount for bar in bar_costs), ZERO), book.currency)
    return {"bar_costs": bar_costs, "total_cost": total}


def month_start(day: date, zone: ZoneInfo):
    """Return the aware UTC hour in which the local month of `day` starts."""
    return day_bounds(day.replace(day=1), zone)[0]


def today_and_month(book: TariffBook, stored: dict, day: date, zone: ZoneInfo) -> dict:
    """Return today's cost and this month's kWh and cost from {aware UTC hour: kWh} covering the month.

    Keys: `today_cost`, `month_kwh`, `month_cost` (costs None when no tariff exists).
    """
    today_start, today_end = day_bounds(day, zone)
    month = {hour: kwh for hour, kwh in stored.items() if month_start(day, zone) <= hour < today_end}
    today = {hour: kwh for hour, kwh in month.items() if hour >= today_start}
    return {"today_cost": total_cost(book, today), "month_kwh": sum(month.values(), ZERO),
            "month_cost": total_cost(book, month)}


def cost_json(money: Money | None) -> str | None:
    """Return a shown total for JSON: a decimal string rounded to the currency's minor unit."""
    return None if money is None else str(money.rounded)


def exact_amount(amount: Decimal) -> str:
    """Return an exact amount as a plain decimal string without trailing zeros (an hour's cost)."""
    return format(amount.normalize(), "f") if amount else "0"
