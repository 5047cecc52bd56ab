"""A client is warned before the limit, then alerted, and notified by the browser while the tab is hidden.

The whole system runs (the `stack` fixture, which projects from an hour's first
seconds: EMS_WARNING_MIN_MINUTES=0). Readings go through the simulator's
publisher, the balancer and a replica, whose warning and alert reach the page
through RabbitMQ, the notifier's STOMP bridge and Socket.IO in a real Chromium.
The browser's permission is granted through Playwright; the test wraps
window.Notification to see what the page shows.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from simulator.publisher import ConfirmedBurstPublisher
from tests.browser.conftest import ACCOUNT_PASSWORD, htmx_settled, sign_in
from tests.processes import wait_for

HOUR_MS = 3_600_000
PIPELINE_TIMEOUT_MS = 30_000
# Records every notification the page constructs, then lets the browser's own show it.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.shownNotifications = [];
  function Recording(title, options) {
    window.shownNotifications.push({ title: title, body: (options || {}).body || "" });
    return new Real(title, options);
  }
  Object.defineProperty(Recording, "permission", { get: () => Real.permission });
  Recording.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recording;
})();
"""
HIDE_THE_TAB = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


@pytest.fixture
def monitor_query(stack):
    """Return a function that runs a query on the stack's monitor database (a new snapshot each time)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.settings.database_url("monitor"))

    def query(sql: str, **parameters):
        with engine.connect() as connection:
            return connection.execute(text(sql), parameters).all()

    yield query
    engine.dispose()


@pytest.fixture
def client_with_device(portal, create_account, monitor_query):
    """Create a client with a 1 kWh device the monitor knows; return (email, device id)."""
    from web.inventory import create_device

    client = create_account("client", "Warned Client")
    with portal.app_context():
        device = create_device({"name": "Kitchen circuit", "max_hourly_kwh": "1.0",
                                "address": "5 Test Lane", "owner_id": client.user_id})
    # Readings of a device the monitor does not know yet would warn of nothing.
    wait_for(lambda: monitor_query("SELECT 1 FROM devices WHERE id = :id", id=str(device.id)), 30,
             "the device event")
    return client.email, str(device.id)


def publish_readings(settings, device_id: str, values: list[float], first_second: int) -> None:
    """Publish readings one second apart from `first_second` past the current UTC hour."""
    hour_start = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    bodies = [json.dumps({"timestamp": hour_start + (first_second + n) * 1000, "device_id": device_id,
                          "measurement_value": value}).encode() for n, value in enumerate(values)]
    ConfirmedBurstPublisher(settings, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all(bodies)


def test_a_client_is_warned_then_alerted_and_notified_while_the_tab_is_hidden(new_page, stack, monitor_query,
                                                                               client_with_device):
    if time.time() % 3600 > 3600 - 60:
        time.sleep(3600 - time.time() % 3600 + 1)  # warning and alert must fall in one running hour
    email, device_id = client_with_device
    page = new_page()
    page.context.add_init_script(RECORD_NOTIFICATIONS)
    sign_in(page, email, ACCOUNT_PASSWORD)

    # Opt in on the Profile page: nothing is asked on load; the button asks, the form stores it.
    page.goto("/profile")
    assert page.evaluate("Notification.permission") == "default"
    page.context.grant_permissions(["notifications"])
    page.click("#allow-notifications")
    expect(page.locator("#notification-permission")).to_have_text("This browser may show EMS notifications.")
    expect(page.locator("#notify-browser")).to_be_checked()
    page.select_option("#timezone-select", "Europe/Bucharest")
    page.click("#preferences button[type=submit]")
    htmx_settled(page)
    expect(page.locator("#notify-browser")).to_be_checked()

    page.goto("/")
    page.wait_for_function("() => window.ems && window.ems.socket && window.ems.socket.connected")
    title = page.title()

    # The demo's surge in small: 0.1 kWh a second from the hour's start heads over 1 kWh at 10 s.
    # The last reading comes once the others are stored: replicas storing at the same moment
    # each count only what was committed before them (monitor/warnings.py).
    publish_readings(stack.settings, device_id, [0.1] * 3, 1)
    stored = "SELECT COUNT(*) FROM readings WHERE device_id = :id"
    wait_for(lambda: monitor_query(stored, id=device_id)[0][0] == 3, 30, "three readings stored")
    publish_readings(stack.settings, device_id, [0.1], 4)
    warning = page.locator("#toasts .toast-warning")
    warning.wait_for(timeout=PIPELINE_TIMEOUT_MS)
    assert warning.get_attribute("role") == "status"
    # 1 kWh at 10 s past the hour, told in her zone (the Profile's), whatever the browser's.
    due = datetime.fromtimestamp(time.time() // 3600 * 3600 + 10, ZoneInfo("Europe/Bucharest"))
    assert f"Kitchen circuit passes its 1 kWh limit at about {due:%H:%M}" in warning.inner_text()
    assert page.title() == f"(1) {title}"
    assert page.evaluate("window.shownNotifications") == [], "the tab is visible: a toast is enough"

    page.evaluate(HIDE_THE_TAB)
    publish_readings(stack.settings, device_id, [0.4, 0.4], 5)
    alert = page.locator("#toasts .toast-alert:not(.toast-warning)")
    alert.wait_for(timeout=PIPELINE_TIMEOUT_MS)
    assert "Over limit: Kitchen circuit" in alert.inner_text()
    page.wait_for_function("() => window.shownNotifications.length > 0", timeout=5000)
    assert page.evaluate("window.shownNotifications") == [
        {"title": "Over limit: Kitchen circuit", "body": alert.locator(".toast-detail").inner_text()}]
    assert page.title() == f"(2) {title}"
