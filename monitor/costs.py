"""What consumption costs: each hour's kWh times the price in force at that hour.

Money is exact: kWh (6 places) times a price (6 places) is an exact Decimal, the
costs of a period's hours are summed exactly, and only a total that is shown is
rounded, once, to the currency's minor unit (half up: 0.125 RON shows as 0.13).
Hours before the first tariff have no price and add nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from monitor.tariffs import TariffBook, minor_digits

ZERO = Decimal("0")


@dataclass(frozen=True)
class Money:
    """An exact amount in a currency; shown rounded to its minor unit."""

    amount: Decimal
    currency: str

    @property
    def rounded(self) -> Decimal:
        """Return the amount rounded half up to the currency's minor unit."""
        return self.amount.quantize(Decimal(1).scaleb(-minor_digits(self.currency)), rounding=ROUND_HALF_UP)

    def __str__(self) -> str:
        return f"{self.rounded:,} {self.currency}"

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)


def hour_cost(book: TariffBook, hour: datetime, kwh: Decimal) -> Decimal:
    """Return the exact cost of `kwh` used in the hour starting at the aware `hour` (0 before any tariff)."""
    price = book.price_at(hour)
    return ZERO if price is None else kwh * price


def hourly_costs(book: TariffBook, stored: dict[datetime, Decimal]) -> dict[datetime, Decimal]:
    """Return {aware hour: exact cost} for {aware hour: kWh}."""
    return {hour: hour_cost(book, hour, kwh) for hour, kwh in stored.items()}


def money_of(book: TariffBook, amount: Decimal) -> Money | None:
    """Return `amount` in the tariffs' currency, or None when no tariff exists."""
    return None if book.currency is None else Money(amount, book.currency)


def total_cost(book: TariffBook, stored: dict[datetime, Decimal]) -> Money | None:
    """Return the exact cost of every hour of {aware hour: kWh}, or None when no tariff exists."""
    return money_of(book, sum(hourly_costs(book, stored).values(), ZERO))


def costs_by(book: TariffBook, stored: dict[datetime, Decimal], keys: list[Hashable],
             key_of: Callable[[datetime], Hashable]) -> list[Money | None]:
    """Return the exact cost of each period in `keys`, an hour going to the period `key_of(hour)`."""
    if book.currency is None:
        return [None] * len(keys)
    sums = dict.fromkeys(keys, ZERO)
    for hour, cost in hourly_costs(book, stored).items():
        key = key_of(hour)
        if key in sums:
            sums[key] += cost
    return [Money(sums[key], book.currency) for key in keys]


def costs_by_day(book: TariffBook, stored: dict[datetime, Decimal], days: list[date],
                 zone: ZoneInfo) -> list[Money | None]:
    """Return the cost of each local day of `days` (the hours' local dates in `zone`)."""
    return costs_by(book, stored, days, lambda hour: hour.astimezone(zone).date())


def costs_by_month(book: TariffBook, stored: dict[datetime, Decimal], firsts: list[date],
                   zone: ZoneInfo) -> list[Money | None]:
    """Return the cost of each local month starting at the dates `firsts`."""
    return costs_by(book, stored, firsts, lambda hour: hour.astimezone(zone).date().replace(day=1))


def money_text(money: Money | None) -> str:
    """Render a cost for people: `12.35 RON`, or an empty string when there is no tariff."""
    return str(money) if money is not None else ""
