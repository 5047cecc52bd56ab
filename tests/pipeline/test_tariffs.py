"""Tariffs through the monitor API: the admin page, and costs beside kWh in JSON, CSV and pages."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import jwt
import pytest
from sqlalchemy import text

from common.auth import ACCESS_COOKIE, CSRF_HEADER, Identity, mint_access_token
from monitor.consumption import day_hours, hourly_between, local_midnight_utc, month_starts
from monitor.costs import costs_by_month
from monitor.spending import year_costs
from monitor.tariffs import DEMO_TARIFF, Band, Tariff, TariffBook, load_tariffs, seed_demo_tariff

CLIENT = Identity(15, "client", "Carla")
ADMIN = Identity(1, "admin", "Ada")
BUCHAREST = "Europe/Bucharest"
BUCHAREST_ZONE = ZoneInfo(BUCHAREST)
TODAY = datetime.now(UTC).date()
# Wednesday 2 December 2026: peak 17:00–21:00 Bucharest time on weekdays.
WEDNESDAY = date(2026, 12, 2)
ON_WEDNESDAY = f"date={WEDNESDAY}&tz={BUCHAREST}"


def tariff_form(**fields) -> dict:
    return {"name": "Home", "currency": "RON", "time_zone": BUCHAREST, "valid_from": "2026-01-01",
            "base_price": "0.80", "band1_name": "Peak", "band1_days": ["0", "1", "2", "3", "4"],
            "band1_start": "17:00", "band1_end": "21:00", "band1_price": "1.20", **fields}


@pytest.fixture
def no_tariffs(sql):
    sql("DELETE FROM tariffs")
    yield
    sql("DELETE FROM tariffs")


@pytest.fixture
def post_as(app, migrated, no_tariffs):
    """Return a function that posts a form with a bearer token of an identity."""
    def post(identity: Identity, path: str, data: dict | None = None):
        token = mint_access_token(migrated, identity)
        return app.test_client().post(path, data=data or {}, headers={"Authorization": f"Bearer {token}"})
    return post


def client_device(sql, hours: list[datetime], kwh: str) -> str:
    """Store a device of CLIENT that used `kwh` in each of the aware UTC `hours`; return its id."""
    device_id = str(uuid.uuid4())
    sql("INSERT INTO devices (id, name, owner_id, max_hourly_kwh, last_sequence) "
        "VALUES (:id, 'Heat pump', :owner, 5.0, 1)", id=device_id, owner=CLIENT.user_id)
    for hour in hours:
        sql("INSERT INTO hourly_consumption VALUES (:id, :hour, :kwh)", id=device_id,
            hour=hour.replace(tzinfo=None), kwh=kwh)
    return device_id


@pytest.fixture
def evening_peak(post_as):
    """The evening-peak tariff, in force since 1 January 2026."""
    assert post_as(ADMIN, "/monitor/tariffs", tariff_form()).status_code == 201


@pytest.fixture
def meter(sql, evening_peak):
    """A client's device that used 1 kWh in every hour of Wednesday 2 December 2026 (Bucharest)."""
    return client_device(sql, day_hours(WEDNESDAY, BUCHAREST_ZONE), "1")


WEDNESDAY_COST = 20 * Decimal("0.80") + 4 * Decimal("1.20")  # 20.80 RON


# --- the admin page ---

def test_only_an_administrator_sees_the_tariffs_page(as_user, no_tariffs):
    assert as_user(ADMIN, "GET", "/monitor/tariffs").status_code == 200
    assert as_user(CLIENT, "GET", "/monitor/tariffs").status_code == 403
    assert as_user(CLIENT, "POST", "/monitor/tariffs").status_code == 403


def test_an_administrator_adds_a_time_of_use_tariff_and_sees_it_in_force(post_as, as_user, sql):
    response = post_as(ADMIN, "/monitor/tariffs", tariff_form())
    assert response.status_code == 201
    page = as_user(ADMIN, "GET", "/monitor/tariffs").get_data(as_text=True)
    assert "Peak: Mon–Fri 17:00–21:00 · 1.20 RON/kWh" in page and "in force" in page
    stored = sql("SELECT name, currency, valid_from, starts_at, base_price FROM tariffs").one()
    # Midnight in Bucharest (UTC+2 in winter) is 22:00 UTC the day before.
    assert stored == ("Home", "RON", date(2026, 1, 1), datetime(2025, 12, 31, 22), Decimal("0.800000"))


def test_overlapping_bands_are_refused_with_a_clear_error_and_nothing_stored(post_as, sql):
    response = post_as(ADMIN, "/monitor/tariffs", tariff_form(
        band2_name="Evening", band2_days=["4", "5"], band2_start="20:00", band2_end="22:00",
        band2_price="1.0"))
    assert response.status_code == 422
    assert "bands Peak and Evening overlap" in response.get_data(as_text=True)
    assert sql("SELECT COUNT(*) FROM tariffs").scalar() == 0


def test_the_form_is_escaped_when_shown_again(post_as):
    response = post_as(ADMIN, "/monitor/tariffs", tariff_form(name="<script>x</script>", currency="???"))
    assert response.status_code == 422
    assert "<script>x" not in response.get_data(as_text=True)
    assert "&lt;script&gt;x" in response.get_data(as_text=True)


def test_a_new_tariff_never_rewrites_the_past(post_as, as_user, meter):
    path = f"/api/monitor/devices/{meter}/daily?from={WEDNESDAY}&to={WEDNESDAY}&tz={BUCHAREST}"
    before = as_user(CLIENT, "GET", path).get_json()["days"][0]["cost"]
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    refused = post_as(ADMIN, "/monitor/tariffs", tariff_form(valid_from=yesterday, base_price="9"))
    assert refused.status_code == 422 and "today or later" in refused.get_data(as_text=True)
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    added = post_as(ADMIN, "/monitor/tariffs", tariff_form(valid_from=tomorrow, base_price="9"))
    assert added.status_code == 201
    assert as_user(CLIENT, "GET", path).get_json()["days"][0]["cost"] == before == str(WEDNESDAY_COST)


def test_only_a_tariff_not_started_yet_can_be_deleted(post_as, sql):
    assert post_as(ADMIN, "/monitor/tariffs", tariff_form()).status_code == 201
    next_year = date(TODAY.year + 1, 1, 1).isoformat()
    assert post_as(ADMIN, "/monitor/tariffs", tariff_form(valid_from=next_year)).status_code == 201
    started, upcoming = (row[0] for row in sql("SELECT id FROM tariffs ORDER BY starts_at"))
    assert post_as(ADMIN, f"/monitor/tariffs/{started}/delete").status_code == 409
    assert post_as(ADMIN, f"/monitor/tariffs/{upcoming}/delete").status_code == 200
    assert post_as(ADMIN, "/monitor/tariffs/999999/delete").status_code == 404
    assert [row[0] for row in sql("SELECT id FROM tariffs")] == [started]


def test_a_cookie_session_adds_a_tariff_only_with_the_csrf_header(app, migrated, no_tariffs, sql):
    token = mint_access_token(migrated, ADMIN)
    browser = app.test_client()
    browser.set_cookie(ACCESS_COOKIE, token)
    assert browser.post("/monitor/tariffs", data=tariff_form()).status_code in (302, 400, 401)  # to /login
    assert sql("SELECT COUNT(*) FROM tariffs").scalar() == 0
    csrf = jwt.decode(token, options={"verify_signature": False})["csrf"]
    with_header = browser.post("/monitor/tariffs", data=tariff_form(), headers={CSRF_HEADER: csrf})
    assert with_header.status_code == 201


# --- costs beside kWh ---

def test_the_day_json_gives_each_hours_exact_cost_and_the_rounded_total(as_user, meter):
    day = as_user(CLIENT, "GET", f"/api/monitor/devices/{meter}/hourly?{ON_WEDNESDAY}").get_json()
    assert day["currency"] == "RON" and day["total_cost"] == "20.80"
    costs = {hour["label"]: hour["cost"] for hour in day["hours"]}
    assert costs["16:00"] == "0.8" and costs["17:00"] == costs["20:00"] == "1.2" and costs["21:00"] == "0.8"
    assert sum(Decimal(hour["cost"]) for hour in day["hours"]) == WEDNESDAY_COST


def test_the_csv_has_a_cost_column_that_sums_to_the_days_cost(as_user, meter):
    response = as_user(CLIENT, "GET",
                       f"/api/monitor/devices/{meter}/export.csv?from={WEDNESDAY}&to={WEDNESDAY}&tz={BUCHAREST}")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 24 and {row["currency"] for row in rows} == {"RON"}
    assert sum(Decimal(row["cost"]) for row in rows) == WEDNESDAY_COST


def test_the_device_pages_show_the_cost_of_the_day_week_month_and_year(as_user, meter):
    base = f"/monitor/devices/{meter}?{ON_WEDNESDAY}"
    day = as_user(CLIENT, "GET", base + "&view=day").get_data(as_text=True)
    assert 'data-testid="period-cost">20.80 RON' in day
    # Each bar's tooltip gives its cost beside its kWh.
    assert re.search(r"17:00[^<\"]*1\.000 kWh · 1\.20 RON", day)
    assert re.search(r"16:00[^<\"]*· 0\.80 RON", day)
    for view in ("week", "month", "year"):
        page = as_user(CLIENT, "GET", f"{base}&view={view}").get_data(as_text=True)
        assert 'data-testid="period-cost">20.80 RON' in page, view


def test_without_a_tariff_pages_and_json_show_kwh_alone(as_user, sql, meter):
    sql("DELETE FROM tariffs")
    day = as_user(CLIENT, "GET", f"/api/monitor/devices/{meter}/hourly?{ON_WEDNESDAY}").get_json()
    assert day["currency"] is None and day["total_cost"] is None and day["hours"][0]["cost"] is None
    page = as_user(CLIENT, "GET", f"/monitor/devices/{meter}?{ON_WEDNESDAY}").get_data(as_text=True)
    assert "period-cost" not in page and "RON" not in page


def test_the_dashboard_and_summary_give_todays_and_this_months_cost(as_user, sql, evening_peak):
    today = datetime.now(BUCHAREST_ZONE).date()
    first_of_month = today.replace(day=1)
    # 00:00 and 01:00 today (off-peak), and 00:00 on the 1st unless that is today: 0.5 kWh each.
    hours = day_hours(today, BUCHAREST_ZONE)[:2] + ([] if today.day == 1 else day_hours(first_of_month,
                                                                                       BUCHAREST_ZONE)[:1])
    client_device(sql, hours, "0.5")
    summary = as_user(CLIENT, "GET", f"/api/monitor/summary?tz={BUCHAREST}").get_json()
    device = summary["devices"][0]
    assert summary["currency"] == "RON" and device["today_cost"] == "0.80"
    assert device["month_kwh"] == 0.5 * len(hours) and device["month_cost"] == f"{0.4 * len(hours):.2f}"
    fragment = as_user(CLIENT, "GET", f"/monitor/fragments/dashboard?tz={BUCHAREST}").get_data(as_text=True)
    assert 'data-testid="today-cost">0.80 RON' in fragment
    assert f"{device['month_cost']} RON" in fragment


def test_the_demo_tariff_is_stored_once_and_prices_a_weekday_evening_at_its_peak(app, no_tariffs):
    with app.extensions["monitor_engine"].begin() as connection:
        assert seed_demo_tariff(connection) is True
        assert seed_demo_tariff(connection) is False
        book = load_tariffs(connection)
    assert len(book.tariffs) == 1 and book.currency == "RON"
    assert book.price_at(datetime(2026, 12, 2, 16, tzinfo=UTC)) == Decimal("1.12")  # 18:00 in Bucharest


@pytest.mark.parametrize("viewer_zone", ["Europe/Bucharest", "America/New_York", "Asia/Kathmandu"])
def test_the_year_summed_by_the_database_costs_what_its_hours_cost_one_by_one(sql, app, no_tariffs,
                                                                               viewer_zone):
    zone = ZoneInfo(viewer_zone)
    # Every 5th hour of 2026 and around it, in varied amounts; two tariffs in two zones, one from
    # a Kolkata midnight (18:30 UTC) in mid-year, both with bands.
    first, last = local_midnight_utc(date(2026, 1, 1), zone), local_midnight_utc(date(2027, 1, 1), zone)
    hours = [first - timedelta(hours=30) + timedelta(hours=5 * n) for n in range(1800)]
    device = client_device(sql, [], "0")
    with app.extensions["monitor_engine"].begin() as connection:
        connection.execute(text("INSERT INTO hourly_consumption VALUES (:id, :hour, :kwh)"),
                           [{"id": device, "hour": hour.replace(tzinfo=None),
                             "kwh": f"{n % 13}.{(n * 7919) % 1000000:06d}"} for n, hour in enumerate(hours)])
    kolkata = Tariff("Later", "RON", ZoneInfo("Asia/Kolkata"), date(2026, 6, 17), Decimal("0.9"),
                     (Band("Evening", frozenset({0, 2, 4, 6}), 18, 23, Decimal("1.733333")),))
    book = TariffBook((DEMO_TARIFF, kolkata))
    with app.extensions["monitor_engine"].connect() as connection:
        by_database = year_costs(connection, device, 2026, zone, book)
        stored = hourly_between(connection, device, first, last)
    one_by_one = costs_by_month(book, stored, month_starts(2026)[:12], zone)
    assert [money.amount for money in by_database] == [money.amount for money in one_by_one]
    assert sum(money.amount for money in by_database) > 0


def test_a_new_owner_pays_nothing_for_the_hours_before_the_device_became_theirs(as_user, sql, evening_peak):
    hours = day_hours(datetime.now(BUCHAREST_ZONE).date(), BUCHAREST_ZONE)[:3]  # 00:00-03:00, off-peak
    device = client_device(sql, hours, "1")
    sql("UPDATE devices SET owner_since = :since WHERE id = :id", id=device,
        since=(hours[1] - timedelta(minutes=30)).replace(tzinfo=None))  # hers from 00:30: hours from 01:00
    item = as_user(CLIENT, "GET", f"/api/monitor/summary?tz={BUCHAREST}").get_json()["devices"][0]
    assert (item["today_kwh"], item["today_cost"], item["month_cost"]) == (2.0, "1.60", "1.60")
    fragment = as_user(CLIENT, "GET", f"/monitor/fragments/dashboard?tz={BUCHAREST}").get_data(as_text=True)
    assert 'data-testid="today-cost">1.60 RON' in fragment
