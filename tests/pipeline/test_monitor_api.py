"""The monitor API: authorization, time zones (DST), alerts inbox, pages and fragments."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, datetime, timedelta

import pytest

from common.auth import Identity, mint_access_token
from common.topology import BALANCER_STATUS_KEY, CONTROL_EXCHANGE
from monitor.charts import bar_chart, nice_ceiling
from monitor.consumption import day_hours

CLIENT = Identity(5, "client", "Carla")
OTHER = Identity(6, "client", "Otto")
ADMIN = Identity(1, "admin", "Ada")
BERLIN = "Europe/Berlin"


@pytest.fixture
def device(sql):
    device_id = str(uuid.uuid4())
    sql("INSERT INTO devices (id, name, owner_id, max_hourly_kwh, last_sequence) "
        "VALUES (:id, 'Heat pump', :owner, 1.0, 1)", id=device_id, owner=CLIENT.user_id)
    return device_id


def add_hour(sql, device_id: str, hour: datetime, kwh: str) -> None:
    sql("INSERT INTO hourly_consumption VALUES (:id, :hour, :kwh)", id=device_id, hour=hour, kwh=kwh)


def add_alert(sql, device_id: str, hour: datetime, owner: int = CLIENT.user_id) -> int:
    return sql("INSERT INTO alerts (device_id, hour_start, owner_id, device_name, kwh, limit_kwh) "
               "VALUES (:id, :hour, :owner, 'Heat pump', 1.2, 1.0)", id=device_id, hour=hour,
               owner=owner).lastrowid


# --- authorization ---

def test_a_client_reads_their_own_device(as_user, device):
    assert as_user(CLIENT, "GET", f"/api/monitor/devices/{device}/hourly").status_code == 200


@pytest.mark.parametrize("path", ["/api/monitor/devices/{}/hourly", "/api/monitor/devices/{}/daily",
                                  "/api/monitor/devices/{}/export.csv", "/monitor/devices/{}"])
def test_a_client_gets_403_for_someone_elses_device(as_user, device, path):
    response = as_user(OTHER, "GET", path.format(device))
    assert response.status_code == 403


def test_a_client_gets_403_for_an_unknown_device_too(as_user):
    assert as_user(OTHER, "GET", f"/api/monitor/devices/{uuid.uuid4()}/hourly").status_code == 403


def test_an_admin_sees_every_device_and_404_for_unknown_ones(as_user, device):
    assert as_user(ADMIN, "GET", f"/api/monitor/devices/{device}/hourly").status_code == 200
    assert as_user(ADMIN, "GET", f"/api/monitor/devices/{uuid.uuid4()}/hourly").status_code == 404


# --- ownership over time ---

def reassigned_device(sql, handed_over: datetime) -> str:
    """Return a device OTHER had until `handed_over`, CLIENT since, with data and alerts of both."""
    device_id = str(uuid.uuid4())
    sql("INSERT INTO devices (id, name, owner_id, owner_since, max_hourly_kwh, last_sequence) "
        "VALUES (:id, 'Heat pump', :owner, :since, 1.0, 2)", id=device_id, owner=CLIENT.user_id,
        since=handed_over)
    for hours_before in (3, 2, 1):
        add_hour(sql, device_id, handed_over - timedelta(hours=hours_before), "0.5")
    add_alert(sql, device_id, handed_over - timedelta(hours=2), owner=OTHER.user_id)
    for hours_after in (0, 1):
        add_hour(sql, device_id, handed_over + timedelta(hours=hours_after), "0.25")
    return device_id


def test_a_new_owner_sees_nothing_of_the_previous_owners_consumption_or_alerts(as_user, sql):
    device_id = reassigned_device(sql, handed_over=datetime(2026, 11, 20, 12))
    base = f"/api/monitor/devices/{device_id}"
    day = "date=2026-11-20&tz=UTC"

    for viewer, expected in ((CLIENT, 0.5), (ADMIN, 2.0)):
        assert as_user(viewer, "GET", f"{base}/hourly?{day}").json["total_kwh"] == expected
        assert as_user(viewer, "GET", f"{base}/daily?from=2026-11-20&to=2026-11-20&tz=UTC").json[
            "days"][0]["kwh"] == expected
    csv_text = as_user(CLIENT, "GET", f"{base}/export.csv?from=2026-11-19&to=2026-11-21&tz=UTC").text
    assert "0.500000" not in csv_text and csv_text.count("0.250000") == 2
    summary = as_user(CLIENT, "GET", "/api/monitor/summary").json["devices"]
    assert [item["latest_alert"] for item in summary if item["id"] == device_id] == [None]
    year = {viewer: as_user(viewer, "GET", f"/monitor/devices/{device_id}?view=year&{day}",
                            {"HX-Request": "true"}).text for viewer in (CLIENT, ADMIN)}
    assert "November 2026: 2.000 kWh" in year[ADMIN] and "November 2026: 0.500 kWh" in year[CLIENT]


def test_a_first_owner_sees_the_whole_history(as_user, sql, device):
    add_hour(sql, device, datetime(2026, 1, 5, 10), "0.75")
    daily = as_user(CLIENT, "GET",
                    f"/api/monitor/devices/{device}/daily?from=2026-01-05&to=2026-01-05&tz=UTC").json
    assert daily["days"][0]["kwh"] == 0.75


def test_anonymous_requests_are_refused(app, device):
    assert app.test_client().get(f"/api/monitor/devices/{device}/hourly").status_code == 401


def test_the_pipeline_page_is_for_admins_only(as_user):
    assert as_user(CLIENT, "GET", "/monitor/pipeline").status_code == 403
    assert as_user(CLIENT, "GET", "/monitor/fragments/pipeline").status_code == 403


def test_the_user_summary_is_for_admins_and_the_client_alone(as_user, device):
    assert as_user(ADMIN, "GET", f"/monitor/fragments/users/{CLIENT.user_id}/summary").status_code == 200
    assert as_user(CLIENT, "GET", f"/monitor/fragments/users/{CLIENT.user_id}/summary").status_code == 200
    assert as_user(OTHER, "GET", f"/monitor/fragments/users/{CLIENT.user_id}/summary").status_code == 403


def test_monitor_root_leads_admins_to_the_pipeline_and_clients_home(as_user):
    assert as_user(ADMIN, "GET", "/monitor").location == "/monitor/pipeline"
    assert as_user(CLIENT, "GET", "/monitor/").location == "/"


def test_a_malformed_date_is_a_400(as_user, device):
    response = as_user(CLIENT, "GET", f"/api/monitor/devices/{device}/hourly?date=26-11-2026")
    assert response.status_code == 400
    assert "YYYY-MM-DD" in response.json["error"]


# --- time zones ---

@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25),
                                            (date(2026, 6, 1), 24)])
def test_a_local_day_has_23_24_or_25_hours(day, hours):
    from zoneinfo import ZoneInfo
    assert len(day_hours(day, ZoneInfo(BERLIN))) == hours


def test_the_day_chart_follows_the_viewers_zone_across_the_autumn_change(as_user, device, sql):
    # 00:00 and 01:00 UTC on 25 Oct 2026 are both "02:00" in Berlin (CEST, then CET).
    add_hour(sql, device, datetime(2026, 10, 25, 0), "0.5")
    add_hour(sql, device, datetime(2026, 10, 25, 1), "1.5")
    add_hour(sql, device, datetime(2026, 10, 24, 21), "9")  # 23:00 local on the 24th: not this day
    body = as_user(CLIENT, "GET", f"/api/monitor/devices/{device}/hourly?date=2026-10-25&tz={BERLIN}").json
    assert len(body["hours"]) == 25
    assert [h["label"] for h in body["hours"][:4]] == ["00:00", "01:00", "02:00 UTC+2", "02:00 UTC+1"]
    assert [h["kwh"] for h in body["hours"][2:4]] == [0.5, 1.5]
    assert body["hours"][3]["over_limit"] is True
    assert body["total_kwh"] == 2.0
    assert body["peak"]["kwh"] == 1.5


def test_the_spring_day_has_no_two_oclock(as_user, device):
    body = as_user(CLIENT, "GET", f"/api/monitor/devices/{device}/hourly?date=2026-03-29&tz={BERLIN}").json
    labels = [h["label"] for h in body["hours"]]
    assert len(labels) == 23 and "02:00" not in labels


def test_daily_totals_split_at_local_midnight(as_user, device, sql):
    add_hour(sql, device, datetime(2026, 7, 1, 21), "1")  # 00:00 on 2 July in Bucharest (UTC+3)
    add_hour(sql, device, datetime(2026, 7, 1, 20), "2")  # 23:00 on 1 July
    body = as_user(CLIENT, "GET", f"/api/monitor/devices/{device}/daily?from=2026-07-01&to=2026-07-02"
                                  "&tz=Europe/Bucharest").json
    assert body["days"] == [{"date": "2026-07-01", "kwh": 2.0, "cost": None},  # no tariff: no cost
                            {"date": "2026-07-02", "kwh": 1.0, "cost": None}]


def test_the_csv_export_lists_hours_in_utc_and_local_time(as_user, device, sql):
    add_hour(sql, device, datetime(2026, 7, 1, 20), "0.25")
    response = as_user(CLIENT, "GET", f"/api/monitor/devices/{device}/export.csv"
                                      "?from=2026-07-01&to=2026-07-01&tz=Europe/Bucharest")
    assert response.mimetype == "text/csv"
    # No tariff: the cost and currency columns are empty.
    assert response.text.splitlines()[1] == "2026-07-01T20:00:00+00:00,2026-07-01T23:00:00+03:00,0.250000,,"


def test_a_reversed_range_is_a_400(as_user, device):
    response = as_user(CLIENT, "GET", f"/api/monitor/devices/{device}/daily?from=2026-07-02&to=2026-07-01")
    assert response.status_code == 400


# --- alerts inbox ---

def test_alerts_are_listed_newest_first_and_paginated(as_user, device, sql):
    ids = [add_alert(sql, device, datetime(2026, 1, 1) + timedelta(hours=n)) for n in range(25)]
    first = as_user(CLIENT, "GET", "/api/monitor/alerts").json
    assert (first["total"], first["pages"], len(first["items"])) == (25, 2, 20)
    assert first["items"][0]["id"] == ids[-1]
    second = as_user(CLIENT, "GET", "/api/monitor/alerts?page=2").json
    assert [item["id"] for item in second["items"]] == list(reversed(ids[:5]))


def test_alerts_filter_by_device_and_stay_private(as_user, device, sql):
    other_device = str(uuid.uuid4())
    add_alert(sql, device, datetime(2026, 1, 1))
    add_alert(sql, other_device, datetime(2026, 1, 1), owner=OTHER.user_id)
    assert as_user(CLIENT, "GET", "/api/monitor/alerts").json["total"] == 1
    assert as_user(CLIENT, "GET", f"/api/monitor/alerts?device_id={other_device}").json["total"] == 0
    assert as_user(ADMIN, "GET", "/api/monitor/alerts").json["total"] == 2
    assert as_user(ADMIN, "GET", f"/api/monitor/alerts?device_id={device}").json["total"] == 1


def test_the_owner_marks_an_alert_read_and_the_unread_count_drops(as_user, device, sql):
    alert_id = add_alert(sql, device, datetime(2026, 1, 1))
    add_alert(sql, device, datetime(2026, 1, 1, 1))
    assert as_user(CLIENT, "GET", "/api/monitor/alerts/unread-count").json == {"unread": 2}
    assert as_user(OTHER, "POST", f"/api/monitor/alerts/{alert_id}/read").status_code == 403
    assert as_user(ADMIN, "POST", f"/api/monitor/alerts/{alert_id}/read").status_code == 403
    assert as_user(CLIENT, "POST", f"/api/monitor/alerts/{alert_id}/read").json["read"] is True
    assert as_user(CLIENT, "GET", "/api/monitor/alerts/unread-count").json == {"unread": 1}
    assert as_user(CLIENT, "POST", "/api/monitor/alerts/read-all").json["marked"] == 1
    assert as_user(CLIENT, "GET", "/api/monitor/alerts/unread-count").json == {"unread": 0}


def test_the_alerts_page_marks_read_in_place_and_tells_the_badge(as_user, device, sql):
    alert_id = add_alert(sql, device, datetime(2026, 1, 1))
    page = as_user(CLIENT, "GET", "/monitor/alerts").text
    assert f'hx-post="/monitor/alerts/{alert_id}/read"' in page
    response = as_user(CLIENT, "POST", f"/monitor/alerts/{alert_id}/read", headers={"HX-Request": "true"})
    assert response.text.lstrip().startswith(f'<tr id="alert-{alert_id}" class="alert-row">')
    assert response.headers["HX-Trigger"] == "ems:alerts-changed"


def test_marking_read_with_the_cookie_needs_the_csrf_header(app, migrated, as_user, device, sql):
    alert_id = add_alert(sql, device, datetime(2026, 1, 1))
    client = app.test_client()
    client.set_cookie("access_token_cookie", mint_access_token(migrated, CLIENT))
    assert client.post(f"/api/monitor/alerts/{alert_id}/read").status_code == 401
    assert as_user(CLIENT, "GET", "/api/monitor/alerts/unread-count").json == {"unread": 1}


# --- pages and fragments ---

def test_the_device_page_draws_the_limit_and_highlights_over_limit_hours(as_user, device, sql):
    add_hour(sql, device, datetime(2026, 7, 1, 10), "1.8")
    add_hour(sql, device, datetime(2026, 7, 1, 11), "0.4")
    page = as_user(CLIENT, "GET", f"/monitor/devices/{device}?date=2026-07-01&tz=UTC").text
    assert page.count('class="bar over"') == 1
    assert 'aria-label="10:00 – 11:00: 1.800 kWh · over the limit"' in page
    assert 'class="limit"' in page
    assert 'type="date"' in page and "2026-06-30" in page and "2026-07-02" in page
    assert "2.20 kWh" in page  # the day total
    assert "10:00 · 1.80 kWh" in page  # the peak hour


def test_the_htmx_request_gets_only_the_chart_fragment(as_user, device):
    response = as_user(CLIENT, "GET", f"/monitor/devices/{device}?view=week", headers={"HX-Request": "true"})
    assert response.text.lstrip().startswith("<section id=\"device-chart\"")


def test_the_dashboard_fragment_lists_the_viewers_devices_with_today_and_a_trend(as_user, device, sql):
    now = datetime.utcnow().replace(minute=0, second=0, microsecond=0)
    add_hour(sql, device, now, "0.75")
    fragment = as_user(CLIENT, "GET", "/monitor/fragments/dashboard?tz=UTC").text
    assert "Heat pump" in fragment and "0.75 kWh" in fragment and "<polyline" in fragment
    assert "Heat pump" not in as_user(OTHER, "GET", "/monitor/fragments/dashboard").text


def test_names_are_escaped(as_user, device, sql):
    sql("UPDATE devices SET name = '<script>alert(1)</script>' WHERE id = :id", id=device)
    add_alert(sql, device, datetime(2026, 1, 1))
    sql("UPDATE alerts SET device_name = '<script>alert(1)</script>'")
    for path in ("/monitor/fragments/dashboard", "/monitor/alerts", f"/monitor/devices/{device}"):
        assert "<script>alert(1)" not in as_user(CLIENT, "GET", path).text


def test_the_pipeline_fragment_shows_routing_per_replica_from_the_balancers_view(as_user, pipeline):
    """The counters travel in the balancer's view on pipeline.status, not in the database."""
    view = {"instance": "b", "strategy": "hash", "sent_at": int(time.time() * 1000), "replicas": [],
            "routed": {"1": 10, "2": 7}, "dead_lettered": 3}
    pipeline.publish_raw(CONTROL_EXCHANGE, BALANCER_STATUS_KEY, [json.dumps(view).encode()])
    fragment = as_user(ADMIN, "GET", "/monitor/fragments/pipeline").text
    assert 'data-testid="routed">10<' in fragment and 'data-testid="routed">7<' in fragment
    assert 'data-testid="strategy">hash<' in fragment
    assert fragment.count('data-testid="routed"') == 3
    assert "3 rejected by the balancer" in fragment


def test_the_pipeline_fragment_counts_conflicting_duplicates_per_replica(as_user, sql):
    sql("INSERT INTO replica_stats (replica, readings_stored, duplicates, conflicting_duplicates, "
        "unknown_device_readings, alerts_raised, updated_at) VALUES (2, 40, 3, 4, 0, 0, UTC_TIMESTAMP())")
    fragment = as_user(ADMIN, "GET", "/monitor/fragments/pipeline").text
    assert 'data-testid="conflicting" class="danger">4<' in fragment
    assert fragment.count('data-testid="conflicting" class="">0<') == 2


# --- chart geometry ---

def test_bars_over_the_limit_are_flagged_and_the_limit_line_sits_at_its_value():
    from decimal import Decimal
    chart = bar_chart(["a", "b"], [Decimal("0.5"), Decimal("2")], limit=Decimal("1"))
    assert [bar.over_limit for bar in chart.bars] == [False, True]
    assert chart.bars[1].y < chart.limit_y < chart.bars[0].y
    assert chart.bars[0].height * 4 == pytest.approx(chart.bars[1].height, rel=0.01)


def test_axis_maximum_is_a_round_number():
    values = (0.0, 0.3, 0.9, 1.7, 2.2, 3.1, 7)
    assert [nice_ceiling(v) for v in values] == [1.0, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0]
