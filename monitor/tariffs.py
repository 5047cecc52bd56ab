"""Tariffs: what a kWh costs at each hour, as the administrator set it.

A tariff has a currency (ISO 4217), a time zone, a start date (in that zone) and a
base price per kWh; time-of-use bands price some whole local hours of some
weekdays differently (e.g. "Peak", Monday–Friday 17:00–21:00). The tariff in force
at an hour is the latest whose start is at or before that hour, so a new tariff
never changes what earlier hours cost. An hour is priced by the band in force at
its start, in the tariff's zone (in zones with a half-hour offset the UTC hour
straddles a band edge and takes the price of its first half).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text
from sqlalchemy.engine import Connection

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ALL_WEEKDAYS = frozenset(range(7))
PRICE_QUANTUM = Decimal("0.000001")
MAX_PRICE = Decimal("100000")
BAND_ROWS = 3  # bands the admin form offers; blank rows are ignored

# Active ISO 4217 codes (funds and precious metals left out). Most have two minor
# digits; the exceptions are listed below.
CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD
XCG XOF XPF YER ZAR ZMW ZWG
""".split())
MINOR_DIGITS = {**dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
                **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3)}


def price_text(price: Decimal) -> str:
    """Render a price per kWh as typed, with at least two decimals: 0.8 → "0.80", 0.1234 → "0.1234"."""
    exact = price.normalize()
    return f"{exact:f}" if -exact.as_tuple().exponent > 2 else f"{price:.2f}"


def minor_digits(currency: str) -> int:
    """Return how many decimal places amounts in `currency` are shown with."""
    return MINOR_DIGITS.get(currency, 2)


@dataclass(frozen=True)
class Band:
    """Some whole local hours of some weekdays priced apart from the base price."""

    name: str
    weekdays: frozenset[int]  # Monday = 0
    start_hour: int  # [start_hour, end_hour), 0–24
    end_hour: int
    price: Decimal

    def covers(self, local: datetime) -> bool:
        """Tell whether the band prices the local moment `local`."""
        return local.weekday() in self.weekdays and self.start_hour <= local.hour < self.end_hour

    def overlaps(self, other: Band) -> bool:
        """Tell whether the two bands share an hour of a weekday."""
        return bool(self.weekdays & other.weekdays) and (self.start_hour < other.end_hour
                                                        and other.start_hour < self.end_hour)

    @property
    def days_label(self) -> str:
        if self.weekdays == ALL_WEEKDAYS:
            return "every day"
        if self.weekdays == frozenset(range(5)):
            return "Mon–Fri"
        return ", ".join(WEEKDAY_NAMES[day] for day in sorted(self.weekdays))

    @property
    def hours_label(self) -> str:
        return f"{self.start_hour:02d}:00–{self.end_hour:02d}:00"


@dataclass(frozen=True)
class Tariff:
    """A price list in force from `starts_at` until the next tariff starts."""

    name: str
    currency: str
    zone: ZoneInfo
    valid_from: date  # in `zone`
    base_price: Decimal
    bands: tuple[Band, ...] = ()
    id: int | None = None

    @cached_property
    def starts_at(self) -> datetime:
        """Return the aware UTC instant of local midnight at the start date."""
        return datetime.combine(self.valid_from, time(0), tzinfo=self.zone).astimezone(UTC)

    @cached_property
    def _weekly_prices(self) -> tuple[Decimal, ...]:
        """Return the price of each local hour of the week (Monday 00:00 first): a year is priced in
        one look-up per hour instead of a walk through the bands."""
        week = [self.base_price] * (7 * 24)
        for band in self.bands:
            for day in band.weekdays:
                week[day * 24 + band.start_hour:day * 24 + band.end_hour] = \
                    [band.price] * (band.end_hour - band.start_hour)
        return tuple(week)

    def price_at(self, hour: datetime) -> Decimal:
        """Return the price per kWh of the hour starting at the aware `hour`."""
        if not self.bands:
            return self.base_price
        local = hour.astimezone(self.zone)
        return self._weekly_prices[local.weekday() * 24 + local.hour]

    def price_at_local(self, weekday: int, hour: int) -> Decimal:
        """Return the price per kWh of a local hour of the week (Monday = 0)."""
        return self._weekly_prices[weekday * 24 + hour]


@dataclass(frozen=True)
class TariffBook:
    """Every tariff, by start: which one prices a given hour."""

    tariffs: tuple[Tariff, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "tariffs", tuple(sorted(self.tariffs, key=lambda t: t.starts_at)))

    @cached_property
    def _starts(self) -> tuple[datetime, ...]:
        return tuple(tariff.starts_at for tariff in self.tariffs)

    @property
    def currency(self) -> str | None:
        """Return the currency of every tariff (they share one), or None when there is none."""
        return self.tariffs[-1].currency if self.tariffs else None

    def in_force(self, hour: datetime) -> Tariff | None:
        """Return the latest tariff starting at or before the aware `hour`, or None."""
        index = bisect.bisect_right(self._starts, hour)
        return self.tariffs[index - 1] if index else None

    def price_at(self, hour: datetime) -> Decimal | None:
        """Return the price per kWh of an hour, or None before the first tariff."""
        tariff = self.in_force(hour)
        return tariff.price_at(hour) if tariff else None


# --- the admin's form ---

class TariffInvalid(ValueError):
    """A tariff the administrator typed cannot be saved; `errors` says why, per field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def _price(value: str | None, field: str, errors: dict[str, str]) -> Decimal | None:
    try:
        price = Decimal((value or "").strip())
    except InvalidOperation:
        errors[field] = "a price per kWh such as 0.85"
        return None
    if not price.is_finite() or price < 0 or price >= MAX_PRICE:
        errors[field] = f"a price from 0 to below {MAX_PRICE} per kWh"
    elif price != price.quantize(PRICE_QUANTUM):
        errors[field] = "at most 6 decimal places"
    else:
        return price
    return None


def _hour(value: str | None, field: str, errors: dict[str, str]) -> int | None:
    """Read `HH:00` (or `HH`) as a whole hour 0–24."""
    text_value = (value or "").strip()
    hour, _, minutes = text_value.partition(":")
    if not hour.isdigit() or int(hour) > 24 or minutes not in ("", "00"):
        errors[field] = "a whole hour such as 17:00 (00:00 to 24:00)"
        return None
    return int(hour)


def parse_band(form: Mapping, index: int, errors: dict[str, str]) -> Band | None:
    """Read band row `index` of the form; None when the row is blank."""
    prefix = f"band{index}_"
    name = (form.get(prefix + "name") or "").strip()
    days = form.getlist(prefix + "days") if hasattr(form, "getlist") else form.get(prefix + "days", [])
    fields = (form.get(prefix + "start"), form.get(prefix + "end"), form.get(prefix + "price"))
    if not name and not any((value or "").strip() for value in fields):
        return None
    if not name or len(name) > 40:
        errors[prefix + "name"] = "a name of 1 to 40 characters, such as Peak"
    weekdays = frozenset(int(day) for day in days if str(day).isdigit() and int(day) < 7)
    if not weekdays:
        errors[prefix + "days"] = "choose at least one weekday"
    start = _hour(fields[0], prefix + "start", errors)
    end = _hour(fields[1], prefix + "end", errors)
    if start is not None and end is not None and start >= end:
        errors[prefix + "end"] = "the band must end after it starts, on the same day (24:00 at the latest)"
    price = _price(fields[2], prefix + "price", errors)
    if any(key.startswith(prefix) for key in errors):
        return None
    return Band(name, weekdays, start, end, price)


def parse_tariff(form: Mapping) -> Tariff:
    """Read a tariff from the admin's form; raise TariffInvalid with every problem."""
    errors: dict[str, str] = {}
    name = (form.get("name") or "").strip()
    if not name or len(name) > 80:
        errors["name"] = "a name of 1 to 80 characters"
    currency = (form.get("currency") or "").strip().upper()
    if currency not in CURRENCIES:
        errors["currency"] = "an ISO 4217 currency code such as RON, EUR or USD"
    zone = None
    try:
        zone = ZoneInfo((form.get("time_zone") or "").strip())
    except (ZoneInfoNotFoundError, ValueError):
        errors["time_zone"] = "a time zone such as Europe/Bucharest"
    try:
        valid_from = date.fromisoformat((form.get("valid_from") or "").strip())
    except ValueError:
        errors["valid_from"] = "a date as YYYY-MM-DD"
        valid_from = None
    base_price = _price(form.get("base_price"), "base_price", errors)
    bands = [band for index in range(1, BAND_ROWS + 1) if (band := parse_band(form, index, errors))]
    for position, band in enumerate(bands):
        for other in bands[:position]:
            if band.overlaps(other):
                errors.setdefault("bands", f"bands {other.name} and {band.name} overlap: "
                                           "each hour of a weekday may belong to one band only")
    if errors:
        raise TariffInvalid(errors)
    return Tariff(name, currency, zone, valid_from, base_price, tuple(bands))


def check_against(tariff: Tariff, book: TariffBook, now: datetime) -> None:
    """Refuse a tariff that would change the past or conflict with the ones stored.

    A tariff may start today or later in its own zone; only the very first one may
    start earlier, since no hour had a cost before it.
    """
    errors = {}
    if book.tariffs and tariff.valid_from < now.astimezone(tariff.zone).date():
        errors["valid_from"] = ("a new tariff starts today or later: starting earlier would change "
                                "costs already shown")
    if any(existing.starts_at == tariff.starts_at for existing in book.tariffs):
        errors["valid_from"] = "another tariff starts at that moment; delete it first"
    if book.currency and tariff.currency != book.currency:
        errors["currency"] = f"every tariff is in {book.currency}, so that totals across a change add up"
    if errors:
        raise TariffInvalid(errors)


# --- storage ---

def _weekday_bits(weekdays: frozenset[int]) -> int:
    return sum(1 << day for day in weekdays)


def _weekdays(bits: int) -> frozenset[int]:
    return frozenset(day for day in range(7) if bits & (1 << day))


def load_tariffs(connection: Connection) -> TariffBook:
    """Return every stored tariff with its bands."""
    bands: dict[int, list[Band]] = {}
    for row in connection.execute(text(
            "SELECT tariff_id, name, weekdays, start_hour, end_hour, price FROM tariff_bands ORDER BY id")):
        bands.setdefault(row.tariff_id, []).append(
            Band(row.name, _weekdays(row.weekdays), row.start_hour, row.end_hour, row.price))
    rows = connection.execute(text(
        "SELECT id, name, currency, time_zone, valid_from, base_price FROM tariffs ORDER BY starts_at"))
    return TariffBook(tuple(Tariff(row.name, row.currency, ZoneInfo(row.time_zone), row.valid_from,
                                   row.base_price, tuple(bands.get(row.id, ())), id=row.id) for row in rows))


def insert_tariff(connection: Connection, tariff: Tariff) -> int:
    """Store a tariff and its bands (the caller commits); return its id."""
    result = connection.execute(text(
        "INSERT INTO tariffs (name, currency, time_zone, valid_from, starts_at, base_price) "
        "VALUES (:name, :currency, :zone, :valid_from, :starts_at, :base_price)"),
        {"name": tariff.name, "currency": tariff.currency, "zone": tariff.zone.key,
         "valid_from": tariff.valid_from, "starts_at": tariff.starts_at.replace(tzinfo=None),
         "base_price": tariff.base_price})
    for band in tariff.bands:
        connection.execute(text(
            "INSERT INTO tariff_bands (tariff_id, name, weekdays, start_hour, end_hour, price) "
            "VALUES (:tariff, :name, :weekdays, :start, :end, :price)"),
            {"tariff": result.lastrowid, "name": band.name, "weekdays": _weekday_bits(band.weekdays),
             "start": band.start_hour, "end": band.end_hour, "price": band.price})
    return result.lastrowid


# The demo's tariff (make run): lei per kWh with a weekday evening peak and cheaper nights,
# in force long before the demo's week of backfilled readings.
DEMO_TARIFF = Tariff("Home (demo)", "RON", ZoneInfo("Europe/Bucharest"), date(2025, 1, 1), Decimal("0.68"),
                     (Band("Peak", frozenset(range(5)), 17, 21, Decimal("1.12")),
                      Band("Night", ALL_WEEKDAYS, 0, 6, Decimal("0.48"))))


def seed_demo_tariff(connection: Connection) -> bool:
    """Store the demo tariff when there is no tariff yet (the caller commits); True if it was added."""
    if load_tariffs(connection).tariffs:
        return False
    insert_tariff(connection, DEMO_TARIFF)
    return True


def delete_future_tariff(connection: Connection, tariff_id: int, now: datetime) -> bool:
    """Delete a tariff that has not started yet (the caller commits); False if none such."""
    result = connection.execute(text("DELETE FROM tariffs WHERE id = :id AND starts_at > :now"),
                                {"id": tariff_id, "now": now.astimezone(UTC).replace(tzinfo=None)})
    return result.rowcount == 1
