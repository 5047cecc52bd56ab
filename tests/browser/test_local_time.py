"""Local time in a real Chromium: a client in Europe/Bucharest signs in (her browser's
zone is stored), and her day chart shows Bucharest hours, both halves of the hour that
repeats when the clocks go back, and each bar's exact value on hover and on keyboard
focus; on a 390-pixel phone the chart's labels stay legible and apart."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from monitor.storage import create_monitor_engine
from simulator.publisher import ConfirmedBurstPublisher
from tests.browser.conftest import TIMEOUT_MS, playwright_api, sign_in
from tests.pipeline.conftest import wait_for

pytestmark = pytest.mark.browser
expect = playwright_api.expect

BUCHAREST = "Europe/Bucharest"
# The day the clocks went back in Bucharest: 03:00 came twice (UTC+3, then UTC+2).
AUTUMN_DAY = "2026-10-25"
READINGS = {  # UTC instant → kWh
    datetime(2026, 10, 25, 0, 30, tzinfo=UTC): 0.3,   # 03:30 UTC+3
    datetime(2026, 10, 25, 1, 30, tzinfo=UTC): 0.6,   # 03:30 UTC+2
    datetime(2026, 10, 25, 10, 15, tzinfo=UTC): 0.4,  # 12:15 UTC+2
}


def reading(device_id: str, at: datetime, kwh: float) -> bytes:
    return json.dumps({"timestamp": int(at.timestamp() * 1000), "device_id": device_id,
                       "measurement_value": kwh}).encode()


@pytest.fixture(scope="module")
def bucharest_client(stack, portal, create_account):
    """A client with one 1 kWh/h meter whose readings of the autumn day went through the pipeline."""
    from web.inventory import create_device

    client = create_account("client", "Ioana Bucharest")
    with portal.app_context():
        device_id = create_device({"name": "Boiler", "max_hourly_kwh": "0.5",
                                   "owner_id": str(client.user_id)}).id
    engine = create_monitor_engine(stack.settings)
    try:
        wait_for(lambda: engine.connect().execute(text("SELECT 1 FROM devices WHERE id = :id"),
                                                  {"id": device_id}).first(), 30,
                 "the device event to reach the monitor")
        ConfirmedBurstPublisher(stack.settings, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all(
            [reading(device_id, at, kwh) for at, kwh in READINGS.items()])
        hours_stored = text("SELECT COUNT(*) FROM hourly_consumption WHERE device_id = :id")
        wait_for(lambda: engine.connect().execute(hours_stored, {"id": device_id}).scalar() == 3, 30,
                 "the readings to pass the pipeline")
    finally:
        engine.dispose()
    return client, device_id


def bucharest_page(chromium, stack, **options):
    context = chromium.new_context(base_url=stack.url, timezone_id=BUCHAREST, **options)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return context, context.new_page()


def test_a_client_in_bucharest_sees_local_hours_on_the_day_chart(chromium, stack, bucharest_client):
    client, device_id = bucharest_client
    context, page = bucharest_page(chromium, stack)
    try:
        sign_in(page, client.email, client.password)  # the browser's zone is stored now
        page.goto(f"/monitor/devices/{device_id}?date={AUTUMN_DAY}")
        chart = page.locator("#device-chart")
        expect(page.locator(".page-header")).to_contain_text(f"times in {BUCHAREST}")
        bars = chart.locator("svg.chart .bar")
        expect(bars).to_have_count(25)
        # Both 03:00s, told apart by their offsets, on the axis and in the bars' values.
        expect(chart.locator("svg.chart text.label", has_text="03:00 UTC+3")).to_be_visible()
        expect(chart.locator("svg.chart text.label", has_text="03:00 UTC+2")).to_be_visible()
        expect(bars.nth(3)).to_have_attribute("aria-label", bar_value("03:00 UTC+3 – 03:00: 0.300 kWh"))
        expect(bars.nth(4)).to_have_attribute(
            "aria-label", bar_value("03:00 UTC+2 – 04:00: 0.600 kWh", over=True))
        expect(chart.get_by_test_id("day-total")).to_have_text("1.30 kWh")

        # The exact value on hover...
        noon = bars.nth(13)
        expect(noon).to_have_attribute("aria-label", bar_value("12:00 – 13:00: 0.400 kWh"))
        noon.hover()
        tooltip = page.locator(".chart-tooltip")
        expect(tooltip).to_be_visible()
        expect(tooltip).to_have_text(bar_value("12:00 – 13:00: 0.400 kWh"))
        # ... and on keyboard focus.
        page.mouse.move(0, 0)
        expect(tooltip).to_be_hidden()
        bars.nth(4).focus()
        expect(tooltip).to_have_text(bar_value("03:00 UTC+2 – 04:00: 0.600 kWh", over=True))
        page.keyboard.press("Tab")
        expect(tooltip).to_have_text(bar_value("04:00 – 05:00: 0.000 kWh"))
        page.keyboard.press("Escape")
        expect(tooltip).to_be_hidden()

        page.goto("/profile")
        expect(page.locator("#timezone-select")).to_have_value(BUCHAREST)
    finally:
        context.close()


def bar_value(text: str, over: bool = False) -> re.Pattern:
    """A bar's value, with the cost a tariff adds when one is in force: the browser tests
    share one stack, and tests/browser/test_costs.py may have set a tariff before this runs."""
    return re.compile("^" + re.escape(text) + r"( · [0-9.,]+ [A-Z]{3})?"
                      + re.escape(" · over the limit" if over else "") + "$")


LABEL_BOXES = """() => [...document.querySelectorAll('#device-chart svg.chart text.label')]
    .filter((label) => getComputedStyle(label).display !== 'none')
    .map((label) => { const box = label.getBoundingClientRect();
                      return {left: box.left, right: box.right, top: box.top, height: box.height,
                              size: parseFloat(getComputedStyle(label).fontSize)}; })"""


# Day and week have the most and the longest labels (month and year follow the same rule).
@pytest.mark.parametrize("view", ["day", "week"])
def test_on_a_phone_the_charts_labels_stay_legible_and_apart(chromium, stack, bucharest_client, view):
    client, device_id = bucharest_client
    context, page = bucharest_page(chromium, stack, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        sign_in(page, client.email, client.password)
        page.goto(f"/monitor/devices/{device_id}?view={view}&date={AUTUMN_DAY}")
        expect(page.locator("#device-chart svg.chart")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        labels = page.evaluate(LABEL_BOXES)
        assert len(labels) >= 4
        assert all(label["size"] >= 11 and label["height"] >= 10 for label in labels)
        rows: dict[float, list] = {}
        for label in labels:
            rows.setdefault(round(label["top"]), []).append(label)
        for row in rows.values():
            row.sort(key=lambda label: label["left"])
            for left, right in zip(row, row[1:], strict=False):
                assert right["left"] >= left["right"], (view, row)
        axis = page.locator("#device-chart svg.chart-axis text").first
        assert float(axis.evaluate("(label) => label.getBoundingClientRect().height")) >= 10
    finally:
        context.close()
