"""Consumption charts in a real Chromium, fed through the whole running pipeline:
a device created in the portal reaches the monitor by its event, readings go
through the balancer and the replicas, and the client's pages show them."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from monitor.storage import create_monitor_engine
from simulator.publisher import ConfirmedBurstPublisher
from tests.browser.conftest import ACCOUNT_PASSWORD, playwright_api, sign_in
from tests.pipeline.conftest import wait_for

pytestmark = pytest.mark.browser
expect = playwright_api.expect

HOUR_MS = 3_600_000


def reading(device_id: str, at_ms: int, kwh: float) -> bytes:
    return json.dumps({"timestamp": at_ms, "device_id": device_id, "measurement_value": kwh}).encode()


@pytest.fixture(scope="module")
def metered_client(stack, portal, create_account):
    """A client with one 1 kWh/h device that used 1.4 kWh this hour and 0.5 kWh yesterday."""
    from web.inventory import create_device

    client = create_account("client", "Chart Client")
    email = client.email
    with portal.app_context():
        device = create_device({"name": "Chart meter", "max_hourly_kwh": "1.0",
                                "owner_id": str(client.user_id)})
        device_id = device.id
    engine = create_monitor_engine(stack.settings)
    wait_for(lambda: engine.connect().execute(text("SELECT 1 FROM devices WHERE id = :id"),
                                              {"id": device_id}).first(), 30,
             "the device event to reach the monitor")
    this_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    yesterday_ten = int(datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
                        .timestamp() * 1000) - 24 * HOUR_MS
    # Seconds apart: minutes would stamp some ahead of the allowed clock skew early in the hour.
    bodies = [reading(device_id, this_hour + (n + 1) * 1000, 0.2) for n in range(7)]
    bodies += [reading(device_id, yesterday_ten + (n + 1) * 600_000, 0.25) for n in range(2)]
    ConfirmedBurstPublisher(stack.settings, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all(bodies)
    wait_for(lambda: engine.connect().execute(text("SELECT COUNT(*) FROM readings WHERE device_id = :id"),
                                              {"id": device_id}).scalar() == 9, 30,
             "the readings to pass the pipeline")
    engine.dispose()
    return email, device_id


def test_the_client_follows_a_device_from_the_dashboard_to_its_day_chart(new_page, metered_client):
    email, device_id = metered_client
    page = new_page()
    sign_in(page, email, ACCOUNT_PASSWORD)

    dashboard = page.locator("#monitor-dashboard")
    expect(dashboard).to_contain_text("Chart meter")
    expect(dashboard).to_contain_text("1.40 kWh")
    # The complete days solid, today dashed to its projection.
    expect(dashboard.locator("svg.sparkline polyline:not(.projection)")).to_have_count(1)
    expect(dashboard.locator("svg.sparkline polyline.projection")).to_have_count(1)

    dashboard.get_by_role("link", name="Day chart →").click()
    expect(page).to_have_url(re.compile(f"/monitor/devices/{device_id}$"))
    chart = page.locator("#device-chart")
    expect(chart.locator("svg.chart")).to_be_visible()
    expect(chart.locator("svg.chart .bar")).to_have_count(24)
    expect(chart.locator("svg.chart .bar.over")).to_have_count(1)
    expect(chart.locator("svg.chart line.limit")).to_have_count(1)
    expect(chart.get_by_test_id("day-total")).to_have_text("1.40 kWh")
    expect(chart.get_by_test_id("peak-hour")).to_contain_text("1.40 kWh")


def test_the_day_chart_steps_back_picks_dates_and_switches_to_the_week(new_page, metered_client):
    email, device_id = metered_client
    today = datetime.now(UTC).date()
    page = new_page()
    sign_in(page, email, ACCOUNT_PASSWORD, next_path=f"/monitor/devices/{device_id}")
    chart = page.locator("#device-chart")

    chart.get_by_role("link", name="Previous day").click()
    expect(page).to_have_url(re.compile(f"date={today - timedelta(days=1)}"))
    expect(chart.get_by_test_id("day-total")).to_have_text("0.50 kWh")
    expect(chart.locator("svg.chart .bar.over")).to_have_count(0)

    chart.locator("input[type=date]").fill(today.isoformat())
    expect(chart.get_by_test_id("day-total")).to_have_text("1.40 kWh")

    chart.get_by_role("tab", name="Week").click()
    expect(chart.locator("svg.chart .bar")).to_have_count(7)
    expect(chart.get_by_test_id("period-total")).to_contain_text("kWh")


def test_another_client_is_refused_the_device_page(new_page, metered_client, create_account):
    _, device_id = metered_client
    other = create_account("client", "Other Client")
    page = new_page()
    sign_in(page, other.email, other.password)
    response = page.goto(f"/monitor/devices/{device_id}")
    assert response.status == 403
