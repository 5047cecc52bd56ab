"""The monitor API in the viewer's zone, taken from the token's `tz` claim: the day chart and
the daily total agree in Kolkata and Kathmandu, New York's autumn hour shows both offsets,
the CSV carries explicit offsets."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from flask_jwt_extended import create_access_token

from common.auth import Identity

CLIENT = Identity(15, "client", "Priya")


@pytest.fixture
def device(sql):
    device_id = str(uuid.uuid4())
    sql("INSERT INTO devices (id, name, owner_id, max_hourly_kwh, last_sequence) "
        "VALUES (:id, 'Geyser', :owner, 1.0, 1)", id=device_id, owner=CLIENT.user_id)
    return device_id


@pytest.fixture
def in_zone(app):
    """Return a function that GETs a path as CLIENT with a token whose `tz` claim is `zone`."""
    def get(zone: str, path: str):
        with app.app_context():
            token = create_access_token(identity=str(CLIENT.user_id),
                                        additional_claims={**CLIENT.claims(), "tz": zone})
        return app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
    return get


def fill_hours(sql, device_id: str, first: datetime, count: int) -> None:
    """Store `count` UTC hours from `first`, hour n using n + 1 thousandths of a kWh."""
    for n in range(count):
        sql("INSERT INTO hourly_consumption VALUES (:id, :hour, :kwh)", id=device_id,
            hour=first + timedelta(hours=n), kwh=f"{(n + 1) / 1000:.3f}")


@pytest.mark.parametrize(("zone", "first_start"), [("Asia/Kolkata", "2026-07-01T00:30:00+05:30"),
                                                   ("Asia/Kathmandu", "2026-07-01T00:45:00+05:45")])
def test_a_day_off_the_whole_hour_is_24_bars_whose_sum_is_the_daily_total(in_zone, sql, device, zone,
                                                                           first_start):
    fill_hours(sql, device, datetime(2026, 6, 29, 12), 96)  # every hour around the day
    hourly = in_zone(zone, f"/api/monitor/devices/{device}/hourly?date=2026-07-01").json
    daily = in_zone(zone, f"/api/monitor/devices/{device}/daily?from=2026-07-01&to=2026-07-01").json
    assert hourly["timezone"] == daily["timezone"] == zone
    assert len(hourly["hours"]) == 24
    assert hourly["hours"][0]["start"] == first_start
    assert hourly["hours"][0]["label"] == first_start[11:16]
    bars = round(sum(hour["kwh"] for hour in hourly["hours"]), 6)
    assert bars == hourly["total_kwh"] == daily["days"][0]["kwh"]


def test_new_yorks_autumn_day_has_25_bars_and_both_one_oclocks(in_zone, sql, device):
    fill_hours(sql, device, datetime(2026, 11, 1, 4), 25)  # local midnight (EDT) to midnight (EST)
    body = in_zone("America/New_York", f"/api/monitor/devices/{device}/hourly?date=2026-11-01").json
    assert len(body["hours"]) == 25
    assert [hour["label"] for hour in body["hours"][:4]] == ["00:00", "01:00 UTC-4", "01:00 UTC-5", "02:00"]
    assert body["total_kwh"] == round(sum(n / 1000 for n in range(1, 26)), 6)


def test_the_csv_gives_each_hour_with_its_offset_in_the_viewers_zone(in_zone, sql, device):
    fill_hours(sql, device, datetime(2026, 7, 1, 18, 0), 2)
    lines = in_zone("Asia/Kolkata", f"/api/monitor/devices/{device}/export.csv?from=2026-07-01&to=2026-07-01"
                    ).text.splitlines()
    # 18:00 UTC is 23:30 on 1 July in Kolkata; 19:00 UTC starts 2 July there (00:30).
    assert [line.split(",")[:2] for line in lines[1:]] == [["2026-07-01T18:00:00+00:00",
                                                             "2026-07-01T23:30:00+05:30"]]


def test_an_unknown_zone_in_the_token_falls_back_to_utc(in_zone, device):
    assert in_zone("Mars/Olympus_Mons", f"/api/monitor/devices/{device}/hourly?date=2026-07-01"
                   ).json["timezone"] == "UTC"
