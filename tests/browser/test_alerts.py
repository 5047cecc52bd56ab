"""A client's open page shows the alert toast and the unread badge when a device goes over its limit.

The whole system runs (the `stack` fixture, behind the gateway); the simulator
sends the readings, which go through the balancer and a monitor replica, whose
alert reaches the page through RabbitMQ, the notifier's STOMP bridge and
Socket.IO in a real Chromium.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.browser.conftest import ACCOUNT_PASSWORD
from tests.browser.conftest import sign_in as sign_in_with_form
from tests.processes import python_module

DEVICE_LIMIT_KWH = "1.5"
# One reading (the simulator stamps it at the last ten-minute mark) of twice the
# limit: one clock hour over the limit, one alert.
READINGS_CSV = "kwh\n3.0\n"
# Device events, readings and the alert each cross RabbitMQ and a consumer.
PIPELINE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def client_with_device(portal, create_account):
    """Create a client and a device of theirs with a low limit; return (email, device id)."""
    from web.inventory import create_device

    client = create_account("client", "Alert Client")
    with portal.app_context():
        device = create_device({"name": "Garage heater", "max_hourly_kwh": DEVICE_LIMIT_KWH,
                                "address": "4 Test Lane", "owner_id": client.user_id})
        return client.email, str(device.id)


@pytest.fixture
def page(new_page):
    """Return a fresh page on the gateway (its own cookies)."""
    return new_page()


def sign_in(page, email: str) -> None:
    """Sign in through the login form and wait for the live connection."""
    sign_in_with_form(page, email, ACCOUNT_PASSWORD)
    page.wait_for_function("() => window.ems && window.ems.socket && window.ems.socket.connected")


def wait_until_the_monitor_knows(page, settings, device_id: str) -> None:
    """Wait until the portal's device event has reached the monitor's copy of the devices.

    Readings of a device the monitor does not know yet would raise no alert.
    """
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.database_url("monitor"))
    try:
        for _ in range(PIPELINE_TIMEOUT_MS // 250):
            with engine.connect() as connection:
                if connection.execute(text("SELECT 1 FROM devices WHERE id = :id"),
                                      {"id": device_id}).first():
                    return
            page.wait_for_timeout(250)
    finally:
        engine.dispose()
    raise AssertionError(f"the monitor never learnt of device {device_id}")


def replay_readings(settings, device_id: str, csv_path) -> None:
    """Send the device's readings with the simulator, as an operator would."""
    csv_path.write_text(READINGS_CSV)
    finished = subprocess.run([*python_module("simulator"), "replay", "--device", device_id,
                               "--csv", str(csv_path)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "EMS_AMQP_URL": settings.amqp_url})
    assert finished.returncode == 0, finished.stderr


def test_an_open_page_shows_the_toast_and_the_badge_when_a_device_goes_over_its_limit(
        page, stack, client_with_device, tmp_path):
    email, device_id = client_with_device
    sign_in(page, email)
    wait_until_the_monitor_knows(page, stack.settings, device_id)
    badge = page.locator("#alert-badge")
    assert badge.is_hidden()

    replay_readings(stack.settings, device_id, tmp_path / "readings.csv")

    toast = page.locator("#toasts .toast-alert")
    toast.wait_for(timeout=PIPELINE_TIMEOUT_MS)
    assert "Garage heater" in toast.inner_text()
    assert "limit 1.5 kWh" in toast.inner_text()
    assert toast.get_attribute("role") == "alert"
    assert toast.locator("a").get_attribute("href") == f"/monitor/devices/{device_id}"
    assert badge.inner_text() == "1"

    # The server keeps the count: a new visit shows the badge without any live event.
    page.reload()
    page.locator("#alert-badge:not([hidden])").wait_for(timeout=5000)
    assert badge.inner_text() == "1"


def test_a_page_whose_access_token_expired_refreshes_it_and_reconnects(page, stack,
                                                                      client_with_device):
    from datetime import timedelta

    from common.auth import decode_access_token, mint_access_token

    email, _ = client_with_device
    sign_in(page, email)
    access = next(c for c in page.context.cookies() if c["name"] == "access_token_cookie")
    identity = decode_access_token(access["value"], stack.settings)
    expired = mint_access_token(stack.settings, identity, timedelta(seconds=-10))
    page.context.add_cookies([{**access, "value": expired}])

    page.evaluate("() => { window.ems.socket.disconnect(); window.ems.socket.connect(); }")

    # Refused as unauthorized, the page refreshes its token and connects again.
    page.wait_for_function("() => window.ems.socket.connected", timeout=10_000)
    renewed = next(c for c in page.context.cookies() if c["name"] == "access_token_cookie")
    assert renewed["value"] != expired
