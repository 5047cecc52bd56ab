"""The Year view of a device: twelve local months summed from hourly rows, the month over the
limit most hours highlighted."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from common.auth import Identity
from monitor.consumption import monthly_totals, most_hours_over

CLIENT = Identity(5, "client", "Carla")
BERLIN = "Europe/Berlin"
# UTC hours of a Berlin year: each sits in the local month named beside it.
HOURS = [
    (datetime(2025, 12, 31, 23), "0.25"),  # 1 January 2026, 00:00 CET: January
    (datetime(2026, 1, 15, 10), "1.5"),    # over the limit
    (datetime(2026, 1, 16, 10), "1.5"),    # over the limit
    (datetime(2026, 3, 31, 21), "0.5"),    # 23:00 CEST on 31 March: March
    (datetime(2026, 3, 31, 22), "2.0"),    # 1 April, 00:00 CEST: April, over the limit
    (datetime(2026, 12, 31, 23), "9.0"),   # 1 January 2027 locally: not this year
]


@pytest.fixture
def device(app):
    device_id = str(uuid.uuid4())
    with app.extensions["monitor_engine"].begin() as connection:
        connection.execute(text("INSERT INTO devices (id, name, owner_id, max_hourly_kwh, last_sequence) "
                                "VALUES (:id, 'Heat pump', :owner, 1.0, 1)"),
                           {"id": device_id, "owner": CLIENT.user_id})
        connection.execute(text("INSERT INTO hourly_consumption VALUES (:id, :hour, :kwh)"),
                           [{"id": device_id, "hour": hour, "kwh": kwh} for hour, kwh in HOURS])
    return device_id


def test_local_months_hold_their_hours_across_the_utc_boundaries(app, device):
    with app.extensions["monitor_engine"].connect() as connection:
        months = monthly_totals(connection, device, 2026, ZoneInfo(BERLIN), Decimal("1.0"))

    assert [(month.first.month, month.kwh, month.hours_over) for month in months if month.kwh] == [
        (1, Decimal("3.25"), 2), (3, Decimal("0.5"), 0), (4, Decimal("2.0"), 1)]
    assert len(months) == 12
    assert most_hours_over(months).first.month == 1


def test_the_year_page_highlights_the_month_over_the_limit_most_hours(as_user, device):
    response = as_user(CLIENT, "GET", f"/monitor/devices/{device}?view=year&date=2026-06-01&tz={BERLIN}",
                       {"HX-Request": "true"})

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert re.search(r'data-testid="worst-month"[^>]*>January · 2 h<', html)
    assert re.search(r'data-testid="period-total">5[.,]75', html)
    over_bars = re.findall(r'<g class="bar over"[^>]*data-tooltip="([^"]*)"', html)
    assert [tooltip.split(":")[0] for tooltip in over_bars] == ["January 2026"]
    assert html.count('<g class="bar') == 12
