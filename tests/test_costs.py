"""Tariffs and costs as plain functions: exact money, the tariff in force per hour, bands, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from monitor.consumption import day_hours
from monitor.costs import Money, costs_by_day, hourly_costs, total_cost
from monitor.tariffs import Band, Tariff, TariffBook, TariffInvalid, check_against, parse_tariff, price_text

BUCHAREST = ZoneInfo("Europe/Bucharest")
KOLKATA = ZoneInfo("Asia/Kolkata")
WEEKDAYS = frozenset(range(5))
PEAK = Band("Peak", WEEKDAYS, 17, 21, Decimal("1.20"))


def evening_peak(valid_from: date = date(2026, 1, 1), zone: ZoneInfo = BUCHAREST,
                 base: str = "0.80", currency: str = "RON") -> Tariff:
    return Tariff("Home", currency, zone, valid_from, Decimal(base), (PEAK,))


def one_kwh_each(hours) -> dict:
    return dict.fromkeys(hours, Decimal("1"))


# --- the tariff in force and its bands ---

def test_a_weekday_peak_band_prices_whole_local_hours_from_17_to_21():
    book = TariffBook((evening_peak(),))
    wednesday = day_hours(date(2026, 12, 2), BUCHAREST)  # UTC+2
    prices = {hour.astimezone(BUCHAREST).hour: book.price_at(hour) for hour in wednesday}
    assert prices[16] == Decimal("0.80")
    assert [prices[h] for h in (17, 18, 19, 20)] == [Decimal("1.20")] * 4
    assert prices[21] == Decimal("0.80")


def test_the_weekend_outside_a_weekday_band_costs_the_base_price():
    book = TariffBook((evening_peak(),))
    saturday = day_hours(date(2026, 12, 5), BUCHAREST)
    assert {book.price_at(hour) for hour in saturday} == {Decimal("0.80")}


def test_a_tariff_starting_at_midnight_prices_the_hours_from_that_local_midnight_on():
    book = TariffBook((evening_peak(base="0.80"), evening_peak(date(2026, 12, 10), base="0.90")))
    # Local midnight of 10 December in Bucharest is 22:00 UTC on the 9th.
    assert book.price_at(datetime(2026, 12, 9, 21, tzinfo=UTC)) == Decimal("0.80")
    assert book.price_at(datetime(2026, 12, 9, 22, tzinfo=UTC)) == Decimal("0.90")
    stored = one_kwh_each(day_hours(date(2026, 12, 9), BUCHAREST) + day_hours(date(2026, 12, 10), BUCHAREST))
    ninth, tenth = costs_by_day(book, stored, [date(2026, 12, 9), date(2026, 12, 10)], BUCHAREST)
    assert ninth.amount == 20 * Decimal("0.80") + 4 * Decimal("1.20")
    assert tenth.amount == 20 * Decimal("0.90") + 4 * Decimal("1.20")


def test_hours_before_the_first_tariff_cost_nothing_and_no_tariff_means_no_cost():
    book = TariffBook((evening_peak(date(2026, 12, 2)),))
    stored = one_kwh_each(day_hours(date(2026, 12, 1), BUCHAREST))
    assert total_cost(book, stored) == Money(Decimal("0"), "RON")
    assert total_cost(TariffBook(), stored) is None


@pytest.mark.parametrize(("day", "hours", "three_oclocks"), [(date(2026, 3, 29), 23, 0),
                                                              (date(2026, 10, 25), 25, 2)])
def test_dst_days_price_their_23_or_25_hours_and_keep_the_four_peak_hours(day, hours, three_oclocks):
    book = TariffBook((Tariff("Home", "RON", BUCHAREST, date(2026, 1, 1), Decimal("0.80"),
                              (Band("Peak", frozenset(range(7)), 17, 21, Decimal("1.20")),)),))
    stored = one_kwh_each(day_hours(day, BUCHAREST))
    assert len(stored) == hours
    assert total_cost(book, stored).amount == (hours - 4) * Decimal("0.80") + 4 * Decimal("1.20")
    local_hours = [hour.astimezone(BUCHAREST).hour for hour in stored]
    assert local_hours.count(3) == three_oclocks  # skipped in spring; in autumn 03:00 repeats, priced twice


def test_in_a_half_hour_zone_an_hour_takes_the_band_in_force_at_its_start():
    book = TariffBook((evening_peak(zone=KOLKATA),))
    # 11:00 UTC is 16:30 in Kolkata: it starts before the peak; 11:30 local… 12:00 UTC is 17:30: peak.
    assert book.price_at(datetime(2026, 12, 2, 11, tzinfo=UTC)) == Decimal("0.80")
    assert book.price_at(datetime(2026, 12, 2, 12, tzinfo=UTC)) == Decimal("1.20")
    assert book.price_at(datetime(2026, 12, 2, 15, tzinfo=UTC)) == Decimal("1.20")  # 20:30
    assert book.price_at(datetime(2026, 12, 2, 16, tzinfo=UTC)) == Decimal("0.80")  # 21:30


# --- exact money ---

@pytest.mark.parametrize(("price", "shown"), [("0.8", "0.80"), ("1.120000", "1.12"), ("0.123400", "0.1234"),
                                             ("2", "2.00"), ("0", "0.00")])
def test_a_price_per_kwh_is_shown_as_typed_with_at_least_two_decimals(price, shown):
    assert price_text(Decimal(price)) == shown


def test_a_total_is_rounded_once_not_hour_by_hour():
    book = TariffBook((Tariff("Flat", "RON", BUCHAREST, date(2026, 1, 1), Decimal("0.5")),))
    hours = day_hours(date(2026, 12, 2), BUCHAREST)[:2]
    stored = dict.fromkeys(hours, Decimal("0.009"))  # 0.0045 RON an hour
    assert total_cost(book, stored).rounded == Decimal("0.01")  # 0.009 half up; per hour it would be 0.00
    assert str(total_cost(book, stored)) == "0.01 RON"


@pytest.mark.parametrize(("currency", "shown"), [("RON", "1,234.57 RON"), ("JPY", "1,235 JPY"),
                                                 ("KWD", "1,234.568 KWD")])
def test_a_total_is_shown_with_its_currencys_minor_unit_rounded_half_up(currency, shown):
    assert str(Money(Decimal("1234.5675"), currency)) == shown


hour_offsets = st.integers(min_value=0, max_value=24 * 60)
kwh_values = st.decimals(min_value=0, max_value=50, places=6)
prices = st.decimals(min_value=0, max_value=5, places=6)


@st.composite
def tariff_books(draw):
    """Up to three tariffs a few weeks apart in one currency, some with a band."""
    tariffs = []
    for index in range(draw(st.integers(1, 3))):
        start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 60)))
        bands = ()
        if draw(st.booleans()):
            first = draw(st.integers(0, 23))
            bands = (Band("Peak", frozenset(draw(st.sets(st.integers(0, 6), min_size=1))), first,
                          draw(st.integers(first + 1, 24)), draw(prices)),)
        zone = draw(st.sampled_from([BUCHAREST, KOLKATA, ZoneInfo("America/New_York"), ZoneInfo("UTC")]))
        tariffs.append(Tariff(f"T{index}", "RON", zone, start, draw(prices), bands))
    # One start per instant, as the database's unique key keeps it.
    unique = {tariff.starts_at: tariff for tariff in tariffs}
    return TariffBook(tuple(unique.values()))


@given(tariff_books(), st.dictionaries(hour_offsets, kwh_values, max_size=60))
@settings(max_examples=200)  # each example prices up to 60 hours in three ways
def test_the_hourly_costs_add_up_to_the_total_and_to_the_days(book, consumption):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    stored = {base + timedelta(hours=offset): kwh for offset, kwh in consumption.items()}
    total = total_cost(book, stored)
    assert total.amount == sum(hourly_costs(book, stored).values(), Decimal("0"))
    days = [date(2025, 12, 31) + timedelta(days=n) for n in range(63)]
    assert sum((money.amount for money in costs_by_day(book, stored, days, BUCHAREST)), Decimal("0")) \
        == total.amount
    for hour, kwh in stored.items():
        tariff = book.in_force(hour)
        assert tariff is None or tariff.starts_at <= hour
        # The price is the first band covering the hour's local start, else the base price.
        local = hour.astimezone(tariff.zone) if tariff else None
        price = next((band.price for band in tariff.bands if band.covers(local)), tariff.base_price) \
            if tariff else 0
        assert hourly_costs(book, {hour: kwh})[hour] == kwh * price


# --- the administrator's form ---

def form(**fields) -> MultiDict:
    values = {"name": "Home", "currency": "ron", "time_zone": "Europe/Bucharest",
              "valid_from": "2026-12-10", "base_price": "0.80", **fields}
    return MultiDict([(key, item) for key, value in values.items()
                      for item in (value if isinstance(value, list) else [value])])


def test_a_flat_tariff_and_a_peak_band_are_read_from_the_form():
    tariff = parse_tariff(form(band1_name="Peak", band1_days=["0", "1", "2", "3", "4"], band1_start="17:00",
                               band1_end="21:00", band1_price="1.2"))
    assert tariff.currency == "RON" and tariff.base_price == Decimal("0.80")
    assert tariff.bands == (Band("Peak", WEEKDAYS, 17, 21, Decimal("1.2")),)
    assert parse_tariff(form()).bands == ()


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"currency": "XYZ"}, "currency", "ISO 4217"),
    ({"time_zone": "Mars/Olympus"}, "time_zone", "time zone"),
    ({"valid_from": "10/12/2026"}, "valid_from", "YYYY-MM-DD"),
    ({"base_price": "-1"}, "base_price", "from 0"),
    ({"base_price": "0.1234567"}, "base_price", "6 decimal"),
    ({"base_price": "NaN"}, "base_price", "from 0"),
    ({"band1_name": "Peak", "band1_days": ["0"], "band1_start": "21:00", "band1_end": "17:00",
      "band1_price": "1"}, "band1_end", "end after"),
    ({"band1_name": "Peak", "band1_days": ["0"], "band1_start": "17:30", "band1_end": "21:00",
      "band1_price": "1"}, "band1_start", "whole hour"),
    ({"band1_name": "Peak", "band1_start": "17:00", "band1_end": "21:00", "band1_price": "1"},
     "band1_days", "weekday"),
    ({"band1_name": "Peak", "band1_days": ["0", "1"], "band1_start": "17:00", "band1_end": "21:00",
      "band1_price": "1.2", "band2_name": "Evening", "band2_days": ["1"], "band2_start": "20:00",
      "band2_end": "23:00", "band2_price": "1.0"}, "bands", "overlap"),
])
def test_a_tariff_form_with_a_mistake_is_refused_with_the_fields_error(fields, field, message):
    with pytest.raises(TariffInvalid) as refused:
        parse_tariff(form(**fields))
    assert message in refused.value.errors[field]


def test_bands_on_other_days_or_touching_hours_do_not_overlap():
    tariff = parse_tariff(form(
        band1_name="Peak", band1_days=["0"], band1_start="17:00", band1_end="21:00", band1_price="1.2",
        band2_name="Late", band2_days=["0"], band2_start="21:00", band2_end="24:00", band2_price="0.5",
        band3_name="Weekend", band3_days=["5", "6"], band3_start="17:00", band3_end="21:00",
        band3_price="0.6"))
    assert len(tariff.bands) == 3


def test_a_new_tariff_may_not_start_in_the_past_nor_change_the_currency():
    book = TariffBook((evening_peak(),))
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    check_against(evening_peak(date(2026, 12, 2)), book, now)
    with pytest.raises(TariffInvalid, match="today or later"):
        check_against(evening_peak(date(2026, 12, 1)), book, now)
    with pytest.raises(TariffInvalid, match="every tariff is in RON"):
        check_against(evening_peak(date(2026, 12, 3), currency="EUR"), book, now)
    with pytest.raises(TariffInvalid, match="another tariff starts"):
        check_against(evening_peak(), TariffBook((evening_peak(date(2027, 1, 1)), evening_peak())),
                      datetime(2025, 1, 1, tzinfo=UTC))
    check_against(evening_peak(date(2020, 1, 1)), TariffBook(), now)  # the first one may start earlier


form_values = st.one_of(st.text(max_size=12), st.sampled_from(["17:00", "24:00", "0.5", "RON", "2026-12-10",
                                                                "Europe/Bucharest", "", "1e999", "-0"]))
form_keys = st.sampled_from(["name", "currency", "time_zone", "valid_from", "base_price"]
                            + [f"band{n}_{part}" for n in (1, 2, 3)
                               for part in ("name", "days", "start", "end", "price")])


@given(st.lists(st.tuples(form_keys, form_values), max_size=25))
@example([("time_zone", "\x00"), ("valid_from", "2026-12-10")])
@example([("base_price", "1e999"), ("currency", "RON")])
@example([("time_zone", "../../etc/passwd")])
@settings(max_examples=300)
def test_any_form_gives_a_tariff_or_field_errors(pairs):
    try:
        tariff = parse_tariff(MultiDict(pairs))
    except TariffInvalid as refused:
        assert refused.errors and all(isinstance(message, str) for message in refused.errors.values())
    else:
        assert tariff.base_price >= 0 and tariff.starts_at.tzinfo is not None
