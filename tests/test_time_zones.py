"""Local time: how stored UTC hours become the hours, days and charts of a viewer's zone,
across DST both ways and zones whose offset is not a whole hour; chart labels that fit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.charts import (
    CHAR_PX,
    LABEL_GAP_PX,
    PHONE_PLOT_PX,
    WIDE_PLOT_PX,
    bar_chart,
    sparkline,
    visible_labels,
)
from monitor.consumption import (
    day_bounds,
    day_hours,
    day_total,
    days_of,
    hour_end,
    hours_of_day,
    local_midnight_utc,
    projected_day_total,
    utc_offset_label,
)
from tests.strategies import texts
from web.preferences import timezone_names, valid_timezone

NAMED_ZONES = ["Europe/Bucharest", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "UTC"]
# Every zone this machine knows, for the properties that must hold anywhere, any year.
ALL_ZONES = sorted(available_timezones())
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2037, 12, 31))


def labels_of(day: date, zone: str) -> list[str]:
    return [hour.label for hour in hours_of_day({}, day, ZoneInfo(zone))]


# --- days of 23, 24 and 25 hours ---

@pytest.mark.parametrize(("zone", "day", "count"), [
    ("Europe/Bucharest", date(2026, 3, 29), 23), ("Europe/Bucharest", date(2026, 10, 25), 25),
    ("America/New_York", date(2026, 3, 8), 23), ("America/New_York", date(2026, 11, 1), 25),
    ("Asia/Kolkata", date(2026, 3, 29), 24), ("Asia/Kathmandu", date(2026, 10, 25), 24),
    ("UTC", date(2026, 10, 25), 24), ("Europe/Bucharest", date(2026, 7, 1), 24),
])
def test_a_local_day_has_as_many_hourly_bars_as_its_clocks_run(zone, day, count):
    assert len(day_hours(day, ZoneInfo(zone))) == count


def test_the_spring_day_in_bucharest_skips_three_oclock():
    labels = labels_of(date(2026, 3, 29), "Europe/Bucharest")
    assert labels[:4] == ["00:00", "01:00", "02:00", "04:00"] and "03:00" not in labels


def test_the_hour_that_repeats_in_autumn_shows_both_offsets():
    assert labels_of(date(2026, 10, 25), "Europe/Bucharest")[2:6] == [
        "02:00", "03:00 UTC+3", "03:00 UTC+2", "04:00"]
    assert labels_of(date(2026, 11, 1), "America/New_York")[:4] == [
        "00:00", "01:00 UTC-4", "01:00 UTC-5", "02:00"]


def test_an_hour_ends_an_hour_later_even_when_the_clocks_go_back():
    first, second = hours_of_day({}, date(2026, 10, 25), ZoneInfo("Europe/Bucharest"))[3:5]
    assert hour_end(first).strftime("%H:%M %z") == "03:00 +0200"
    assert hour_end(second).strftime("%H:%M %z") == "04:00 +0200"


@pytest.mark.parametrize(("zone", "first_label", "first_utc"), [
    ("Asia/Kolkata", "00:30", datetime(2026, 6, 30, 19, tzinfo=UTC)),
    ("Asia/Kathmandu", "00:45", datetime(2026, 6, 30, 19, tzinfo=UTC)),
    ("America/St_Johns", "00:30", datetime(2026, 7, 1, 3, tzinfo=UTC)),
])
def test_in_a_zone_off_the_whole_hour_a_day_is_the_utc_hours_starting_in_it(zone, first_label, first_utc):
    day = date(2026, 7, 1)
    assert local_midnight_utc(day, ZoneInfo(zone)) == first_utc
    labels = labels_of(day, zone)
    assert len(labels) == 24 and labels[0] == first_label and labels[-1] == f"23:{first_label[3:]}"


def test_the_kolkata_day_chart_and_daily_total_agree_hour_for_hour():
    zone, day = ZoneInfo("Asia/Kolkata"), date(2026, 7, 1)
    start, end = day_bounds(day, zone)
    # Every UTC hour of three days, numbered, so that a missing or extra hour shows in the sum.
    stored = {start - timedelta(hours=30) + timedelta(hours=n): Decimal(n) for n in range(90)}
    chart = hours_of_day(stored, day, zone)
    assert day_total(chart) == days_of(stored, day, day, zone)[0].kwh == sum(
        kwh for hour, kwh in stored.items() if start <= hour < end)


@pytest.mark.parametrize(("offset", "label"), [(3 * 60, "UTC+3"), (-4 * 60, "UTC-4"), (330, "UTC+5:30"),
                                               (345, "UTC+5:45"), (-210, "UTC-3:30"), (0, "UTC+0")])
def test_offsets_are_written_as_people_write_them(offset, label):
    from datetime import timezone
    assert utc_offset_label(datetime(2026, 1, 1, tzinfo=timezone(timedelta(minutes=offset)))) == label


@settings(max_examples=200)
@given(zone=st.sampled_from(NAMED_ZONES), day=days)
def test_every_day_of_the_named_zones_has_23_24_or_25_hours(zone, day):
    assert len(day_hours(day, ZoneInfo(zone))) in (23, 24, 25)


@settings(max_examples=200)
@given(zone=st.sampled_from(ALL_ZONES), day=days)
def test_consecutive_days_tile_the_utc_hours_in_every_zone(zone, day):
    today_start, today_end = day_bounds(day, ZoneInfo(zone))
    tomorrow_start, _ = day_bounds(day + timedelta(days=1), ZoneInfo(zone))
    assert today_end == tomorrow_start and today_start.minute == 0
    # Each hour belongs to the local day its start falls in.
    for hour in day_hours(day, ZoneInfo(zone)):
        assert hour.astimezone(ZoneInfo(zone)).date() == day


@settings(max_examples=100)
@given(zone=st.sampled_from(NAMED_ZONES + ALL_ZONES[::7]), day=days,
       micro_kwh=st.lists(st.integers(min_value=0, max_value=10**8), min_size=96, max_size=96))
def test_the_day_charts_bars_sum_to_the_daily_totals(zone, day, micro_kwh):
    local = ZoneInfo(zone)
    start = day_bounds(day - timedelta(days=1), local)[0]
    stored = {start + timedelta(hours=n): Decimal(value).scaleb(-6) for n, value in enumerate(micro_kwh)}
    totals = days_of(stored, day - timedelta(days=1), day + timedelta(days=1), local)
    for total in totals:
        assert day_total(hours_of_day(stored, total.day, local)) == total.kwh


# --- the zone a user picks ---

def test_the_profile_offers_every_known_zone_and_accepts_only_those():
    assert {"Europe/Bucharest", "Asia/Kathmandu", "UTC"} <= set(timezone_names())
    assert valid_timezone("Asia/Kolkata") == "Asia/Kolkata"
    for bad in ("Europe/Atlantis", "/etc/localtime", "../UTC", "utc ", None, 3, ["UTC"]):
        assert valid_timezone(bad) is None


@settings(max_examples=200)
@given(name=st.one_of(texts, st.text(), st.sampled_from(ALL_ZONES)))
def test_any_text_is_either_a_known_zone_or_refused(name):
    accepted = valid_timezone(name)
    assert accepted is None or (accepted == name and name in timezone_names())


# --- charts people can read ---

def shown_spans(labels: list[str], shown: list[bool], plot_px: float) -> list[tuple[float, float]]:
    slot = plot_px / len(labels)
    return [((index + 0.5) * slot - len(label) * CHAR_PX / 2, (index + 0.5) * slot + len(label) * CHAR_PX / 2)
            for index, (label, show) in enumerate(zip(labels, shown, strict=True)) if show]


@settings(max_examples=200)
@given(width=st.integers(min_value=2, max_value=12), count=st.integers(min_value=1, max_value=40),
       plot_px=st.sampled_from([PHONE_PLOT_PX, WIDE_PLOT_PX]))
def test_x_axis_labels_never_overlap(width, count, plot_px):
    labels = ["x" * width] * count
    spans = shown_spans(labels, visible_labels(labels, plot_px), plot_px)
    assert spans
    for (_, right), (left, _) in zip(spans, spans[1:], strict=False):
        assert left - right >= LABEL_GAP_PX - 0.01


def test_a_weeks_labels_all_fit_a_phone_and_a_days_every_few_hours():
    week = bar_chart(["Mon\n01", "Tue\n02", "Wed\n03", "Thu\n04", "Fri\n05", "Sat\n06", "Sun\n07"],
                     [Decimal(1)] * 7)
    assert all(bar.on_phone and bar.on_wide for bar in week.bars)
    hours = [f"{hour:02d}:00" for hour in range(24)]
    day = bar_chart(hours, [Decimal(1)] * 24)
    assert sum(bar.on_phone for bar in day.bars) >= 6 and sum(bar.on_wide for bar in day.bars) >= 12


def test_both_halves_of_a_repeated_hour_keep_their_labels_on_two_rows():
    hours = hours_of_day({}, date(2026, 10, 25), ZoneInfo("Europe/Bucharest"))
    keep = frozenset(index for index, hour in enumerate(hours) if hour.repeated)
    chart = bar_chart([hour.label for hour in hours], [Decimal(0)] * 25, keep_labels=keep)
    twins = [bar for bar in chart.bars if "UTC" in bar.label]
    assert [(bar.label, bar.on_phone, bar.on_wide, bar.row) for bar in twins] == [
        ("03:00 UTC+3", True, True, 0), ("03:00 UTC+2", True, True, 1)]
    neighbours = [chart.bars[index] for index in (2, 5)]
    assert not any(bar.on_phone for bar in neighbours)


def test_each_bar_carries_its_exact_value_for_hover_and_focus():
    chart = bar_chart(["14:00"], [Decimal("0.5125")], titles=["14:00 – 15:00"])
    assert chart.bars[0].tooltip == "14:00 – 15:00: 0.512 kWh"  # three places, as everywhere


# --- the dashboard's 7-day trend ---

def household_days(first: date, count: int, zone: ZoneInfo) -> dict:
    """Return {UTC hour: kWh} of `count` days using 0.1 kWh an hour at night and 0.5 from 06:00 on."""
    stored = {}
    for offset in range(count):
        for hour in day_hours(first + timedelta(days=offset), zone):
            stored[hour] = Decimal("0.5") if hour.astimezone(zone).hour >= 6 else Decimal("0.1")
    return stored


def test_todays_total_is_projected_from_the_shape_of_the_days_before_not_its_night_rate():
    zone, today = ZoneInfo("Europe/Bucharest"), date(2026, 7, 8)
    stored = household_days(today - timedelta(days=6), 7, zone)
    five_am = datetime(2026, 7, 8, 5, 30, tzinfo=zone)
    # So far 6 night hours (0.6 kWh); to come 18 day hours as on the days before (9 kWh).
    assert projected_day_total(stored, today, zone, five_am, past_days=6) == Decimal("9.600")
    yesterday = today - timedelta(days=1)
    assert days_of(stored, yesterday, yesterday, zone)[0].kwh == Decimal("9.6")  # a whole day


def test_the_trend_draws_complete_days_solid_and_todays_projection_dashed():
    week = [Decimal(10)] * 6 + [Decimal("2.5")]
    trend = sparkline(week, projected_today=Decimal(10))
    assert len(trend.points.split()) == 6 and len(trend.projection.split()) == 2
    # A steady week stays level: today's projected point sits with yesterday's, not at the bottom.
    assert trend.projection.split()[0].split(",")[1] == trend.projection.split()[1].split(",")[1]


def test_a_week_without_today_is_drawn_whole():
    trend = sparkline([Decimal(n) for n in range(7)])
    assert len(trend.points.split()) == 7 and trend.projection == "" and trend.projected_kwh is None
