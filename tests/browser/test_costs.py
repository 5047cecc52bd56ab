"""Cost in a real Chromium: an administrator sets a time-of-use tariff on the Tariffs page, and a
client in Europe/Bucharest sees what her consumption (sent through the whole pipeline) cost."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from monitor.storage import create_monitor_engine
from simulator.publisher import ConfirmedBurstPublisher
from tests.browser.conftest import ACCOUNT_PASSWORD, TIMEOUT_MS, htmx_settled, playwright_api, sign_in
from tests.processes import wait_for

pytestmark = pytest.mark.browser
expect = playwright_api.expect

BUCHAREST = "Europe/Bucharest"
HOUR_MS = 3_600_000
READINGS = 7
READING_KWH = Decimal("0.2")
BASE, PEAK = Decimal("0.80"), Decimal("1.20")


def price_now() -> Decimal:
    """Return the tariff's price for this hour, worked out by hand: weekdays 17:00-21:00 in Bucharest."""
    local = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).astimezone(ZoneInfo(BUCHAREST))
    return PEAK if local.weekday() < 5 and 17 <= local.hour < 21 else BASE


@pytest.fixture(scope="module")
def monitor_database(stack):
    engine = create_monitor_engine(stack.settings)
    yield engine
    engine.dispose()


@pytest.fixture
def bucharest_page(chromium, stack):
    """Return a page whose browser lives in Europe/Bucharest (its zone is stored at sign-in)."""
    context = chromium.new_context(base_url=stack.url, timezone_id=BUCHAREST)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def metered_client(stack, portal, create_account, monitor_database):
    """A client whose meter used 7 × 0.2 kWh this hour, sent through the balancer and the replicas."""
    from web.inventory import create_device

    client = create_account("client", "Cost Client")
    with portal.app_context():
        device_id = create_device({"name": "Cost meter", "max_hourly_kwh": "5.0",
                                   "owner_id": str(client.user_id)}).id
    wait_for(lambda: monitor_database.connect().execute(text("SELECT 1 FROM devices WHERE id = :id"),
                                                        {"id": device_id}).first(), 30,
             "the device event to reach the monitor")
    this_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    bodies = [json.dumps({"timestamp": this_hour + (n + 1) * 1000, "device_id": device_id,
                          "measurement_value": float(READING_KWH)}).encode() for n in range(READINGS)]
    ConfirmedBurstPublisher(stack.settings, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all(bodies)
    wait_for(lambda: monitor_database.connect().execute(text(
        "SELECT COUNT(*) FROM readings WHERE device_id = :id"), {"id": device_id}).scalar() == READINGS, 30,
        "the readings to pass the pipeline")
    return client, device_id


def test_a_client_in_bucharest_sees_the_cost_of_her_consumption_under_a_time_of_use_tariff(
        new_page, bucharest_page, create_account, monitor_database, metered_client):
    with monitor_database.begin() as connection:  # this test's tariff is the first and only one
        connection.execute(text("DELETE FROM tariffs"))
    admin = create_account("admin", "Tariff Admin")
    page = new_page()
    sign_in(page, admin.email, admin.password, "/monitor/tariffs")
    page.locator("#tariff-create").get_by_role("button", name="Save tariff").click()
    expect(page.locator("#tariff-create")).to_contain_text("a name of 1 to 80 characters")  # shown, not saved
    form = page.locator("#tariff-create")
    form.get_by_label("Name").first.fill("Home")
    form.locator("input[name=currency]").fill("RON")
    form.locator("input[name=time_zone]").fill(BUCHAREST)
    form.locator("input[name=valid_from]").fill("2025-01-01")
    form.locator("input[name=base_price]").fill(str(BASE))
    band = form.get_by_test_id("band-1")
    band.locator("input[name=band1_name]").fill("Peak")
    for weekday in range(5):
        band.locator(f"input[name=band1_days][value='{weekday}']").check()
    band.locator("input[name=band1_start]").fill("17:00")
    band.locator("input[name=band1_end]").fill("21:00")
    band.locator("input[name=band1_price]").fill(str(PEAK))
    form.get_by_role("button", name="Save tariff").click()
    expect(page.locator("#tariffs")).to_contain_text("Tariff Home saved")
    expect(page.get_by_test_id("tariff-row")).to_contain_text("Peak: Mon–Fri 17:00–21:00 · 1.20 RON/kWh")

    client, device_id = metered_client
    cost = f"{READINGS * READING_KWH * price_now():.2f} RON"  # 1.12 RON off-peak, 1.68 RON at the peak
    sign_in(bucharest_page, client.email, ACCOUNT_PASSWORD)
    dashboard = bucharest_page.locator("#monitor-dashboard")
    expect(dashboard).to_contain_text("Cost meter")
    expect(dashboard).to_contain_text("1.40 kWh")
    expect(dashboard.get_by_test_id("today-cost")).to_have_text(cost)
    expect(dashboard.get_by_test_id("month-usage")).to_contain_text(cost)

    htmx_settled(bucharest_page)
    dashboard.get_by_role("link", name="Day chart →").click()
    expect(bucharest_page.locator("#device-chart").get_by_test_id("period-cost")).to_have_text(cost)
    expect(bucharest_page.locator("body")).to_contain_text(BUCHAREST)  # the page says whose hours they are
