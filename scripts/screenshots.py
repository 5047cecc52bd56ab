"""Screenshots of the running system for the README, saved as PNGs in docs/screenshots/.

    .venv/bin/python scripts/screenshots.py            # against `make run` on http://localhost:8080
    .venv/bin/python scripts/screenshots.py --start    # starts a stack of its own, seeded, and stops it

Signs in as the demo client Alice from a browser in Europe/Bucharest and saves:
the dashboard; a device's day chart with a bar's tooltip shown (and the same chart
on a 390-pixel phone); a warning toast. The warning is a real one: the script
gives Alice a new meter ("Kettle", 0.5 kWh/h) through the portal's API as the
demo administrator and publishes readings of the current hour for it, heading
over its limit, as a meter would; the pipeline's replicas project the hour and
warn (monitor/warnings.py: at least 10 minutes of the hour and 3 readings), and
the toast pops up on her page. The meter is deleted afterwards. Between minute
50 and minute 11 of an hour the script waits for minute 11 (a projection needs
10 minutes of data and some of the hour left).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from common.settings import load_settings  # noqa: E402
from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE  # noqa: E402
from simulator.publisher import ConfirmedBurstPublisher  # noqa: E402
from web.demo import DEMO_ACCOUNTS  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ZONE = "Europe/Bucharest"
DESKTOP = {"width": 1200, "height": 760}
PHONE = {"width": 390, "height": 844}
KETTLE_LIMIT_KWH = 0.5
# The projection needs 10 minutes of the hour (EMS_WARNING_MIN_MINUTES) and time left to warn of.
FIRST_MINUTE, LAST_MINUTE = 11, 50

ADMIN, ALICE = (next(account for account in DEMO_ACCOUNTS if account.email == email)
                for email in ("admin@ems.local", "alice@ems.local"))


def api(base_url: str, method: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    """Call the portal's JSON API and return its answer."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = Request(base_url + path, method=method, headers=headers,  # noqa: S310 - our own gateway
                      data=json.dumps(body).encode() if body is not None else None)
    with urlopen(request, timeout=30) as response:  # noqa: S310
        text = response.read()
    return json.loads(text) if text else {}


def token_of(base_url: str, account) -> str:
    return api(base_url, "POST", "/api/auth/login", body={"email": account.email,
                                                          "password": account.password})["access_token"]


def wait_for_a_minute_to_warn_in() -> datetime:
    """Return now once it is between FIRST_MINUTE and LAST_MINUTE of an hour (waiting if need be)."""
    now = datetime.now(UTC)
    if not FIRST_MINUTE <= now.minute < LAST_MINUTE:
        start = now.replace(minute=FIRST_MINUTE, second=0, microsecond=0)
        if now.minute >= LAST_MINUTE:
            start += timedelta(hours=1)
        print(f"waiting until {start:%H:%M} UTC for a warning to be possible", flush=True)
        time.sleep((start - now).total_seconds())
    return datetime.now(UTC)


def readings_heading_over(device_id: str, now: datetime) -> list[bytes]:
    """Return readings of this hour so far whose rate passes the limit before the hour ends.

    Their total stays under the limit (so no alert yet) while the rate projects
    half as much again over it by the hour's end (or 0.9 of it, late in the hour).
    """
    hour = now.replace(minute=0, second=0, microsecond=0)
    elapsed = (now - hour).total_seconds() - 30
    total = KETTLE_LIMIT_KWH * min(0.9, 1.5 * elapsed / 3600)
    count = 6
    stamps = [hour + timedelta(seconds=elapsed * (n + 1) / count) for n in range(count)]
    return [json.dumps({"timestamp": int(stamp.timestamp() * 1000), "device_id": device_id,
                        "measurement_value": round(total / count, 6)}).encode() for stamp in stamps]


def wait_until_the_monitor_knows(base_url: str, token: str, device_id: str, timeout: float = 60) -> None:
    """Wait until the device's event has reached the monitor (its chart answers the owner)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            api(base_url, "GET", f"/api/monitor/devices/{device_id}/hourly", token)
            return
        except HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def sign_in(page, account) -> None:
    page.goto("/login")
    page.fill("input[name=email]", account.email)
    page.fill("input[name=password]", account.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def shoot(base_url: str, settings, with_warning: bool = True) -> None:
    """Save every screenshot of the system behind `base_url`."""
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(base_url=base_url, timezone_id=ZONE, viewport=DESKTOP)
        context.set_default_timeout(30_000)
        page = context.new_page()
        sign_in(page, ALICE)

        page.goto("/")
        expect(page.locator("#monitor-dashboard svg.sparkline").first).to_be_visible()
        page.screenshot(path=OUT / "dashboard.png")

        # The demo's kitchen circuit has a low limit: its chart shows the limit line and red hours.
        device_card = page.locator("#monitor-dashboard .device-usage", has_text="Kitchen circuit")
        device_card.get_by_role("link", name="Day chart →").click()
        chart = page.locator("#device-chart")
        # Yesterday: a whole day (today's chart ends at this hour).
        chart.locator("a[rel=prev]").click()
        expect(page).to_have_url(re.compile(r"date="))
        page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-settling')")
        expect(chart.locator("svg.chart .bar").first).to_be_visible()
        tallest = chart.locator("svg.chart .bar").evaluate_all(
            "(bars) => bars.reduce((best, bar, index, all) => "
            "bar.querySelector('rect').getBBox().height > all[best].querySelector('rect').getBBox().height "
            "? index : best, 0)")
        chart.locator("svg.chart .bar").nth(tallest).hover()
        expect(page.locator(".chart-tooltip")).to_be_visible()
        page.screenshot(path=OUT / "day-chart-tooltip.png", full_page=True)

        phone = browser.new_context(base_url=base_url, timezone_id=ZONE, viewport=PHONE, is_mobile=True,
                                    device_scale_factor=1, storage_state=context.storage_state())
        phone_page = phone.new_page()
        phone_page.goto(re.sub(r"view=\w+", "view=week", page.url))
        expect(phone_page.locator("#device-chart svg.chart")).to_be_visible()
        phone_page.locator("#device-chart").screenshot(path=OUT / "week-chart-phone.png")
        phone.close()

        if with_warning:
            shoot_warning(page, base_url, settings)
        browser.close()


def shoot_warning(page, base_url: str, settings) -> None:
    """Give Alice a kettle heading over its limit this hour and save the warning toast."""
    admin_token = token_of(base_url, ADMIN)
    alice_id = api(base_url, "GET", "/api/me", token_of(base_url, ALICE))["id"]
    kettle = api(base_url, "POST", "/api/devices", admin_token, {
        "name": "Kettle", "max_hourly_kwh": str(KETTLE_LIMIT_KWH), "address": "12 Elm Street, Springfield",
        "owner_id": alice_id})
    try:
        page.goto("/")
        expect(page.locator("#monitor-dashboard")).to_be_visible()
        wait_until_the_monitor_knows(base_url, token_of(base_url, ALICE), kettle["id"])
        now = wait_for_a_minute_to_warn_in()
        ConfirmedBurstPublisher(settings, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all(
            readings_heading_over(kettle["id"], now))
        toast = page.locator(".toast.toast-warning")
        try:
            expect(toast).to_be_visible(timeout=60_000)
        except AssertionError:
            path = f"/api/monitor/alerts?device_id={kettle['id']}"
            stored = api(base_url, "GET", path, token_of(base_url, ALICE))
            print(f"no warning toast; the kettle's alerts in the inbox: {stored['items']}", file=sys.stderr)
            raise
        page.mouse.move(toast.bounding_box()["x"] + 10, toast.bounding_box()["y"] + 10)  # keeps it open
        # The cards catch up with the kettle's readings (they refresh every minute by themselves).
        page.evaluate("htmx.ajax('GET', '/monitor/fragments/dashboard', "
                      "{target: '#monitor-dashboard', swap: 'outerHTML'})")
        kettle_card = page.locator("#monitor-dashboard .device-usage", has_text="Kettle")
        expect(kettle_card).not_to_contain_text("0.00 kWh")
        page.wait_for_function("() => document.querySelector('.toast.toast-warning').getAnimations()"
                               ".every((animation) => animation.playState === 'finished')")
        page.screenshot(path=OUT / "warning-toast.png")
    finally:
        api(base_url, "DELETE", f"/api/devices/{kettle['id']}", admin_token)


@contextlib.contextmanager
def own_stack():
    """Start every Procfile process but the simulator on free ports, seeded with the demo; yield its URL.

    Its own database prefix and RabbitMQ virtual host (tests/isolation.py), removed afterwards.
    """
    import subprocess

    from migrations.runner import upgrade
    from tests.isolation import environment, isolated
    from tests.processes import Stack, free_port, procfile_commands

    ports = {f"EMS_{name}_PORT": str(free_port()) for name in ("GATEWAY", "WEB", "SUPPORT", "NOTIFIER",
                                                               "MONITOR_API")}
    # A label of its own: two runs at once never share (or drop) each other's databases.
    with isolated(f"screenshots-{secrets.token_hex(3)}", ports) as variables, environment(variables):
        settings = load_settings()
        upgrade(settings)
        # The demo's users, devices, tariff, conversations and a week of readings, as `make run` seeds them.
        subprocess.run(["make", "--no-print-directory", "seed"], cwd=ROOT, check=True)
        stack = Stack([name for name in procfile_commands() if name != "simulator"],
                      env={**variables, "EMS_PUBLIC_URL": settings.public_url})
        try:
            stack.start([int(port) for port in ports.values()])
            yield f"http://localhost:{ports['EMS_GATEWAY_PORT']}"
        finally:
            stack.stop()


def main() -> None:
    # Stopped by a signal, still stop the stack and remove its databases (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8080", help="the running system's gateway")
    parser.add_argument("--start", action="store_true", help="start a seeded stack of its own instead")
    parser.add_argument("--without-warning", action="store_true", help="leave out the warning toast")
    arguments = parser.parse_args()
    if arguments.start:
        with own_stack() as url:
            shoot(url, load_settings(), not arguments.without_warning)
    else:
        shoot(arguments.url, load_settings(service="simulator"), not arguments.without_warning)
    print(f"saved {', '.join(sorted(path.name for path in OUT.glob('*.png')))} in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
