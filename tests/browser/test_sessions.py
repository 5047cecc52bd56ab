"""Ending sessions, in a real Chromium through the gateway and every real process: the
Profile page (from the user menu) signs a user out everywhere; their other tab is sent
to the sign-in page within 5 s (its socket closed, its refresh refused), and the old
access token is refused by the portal, support and the monitor API within 5 s."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.browser.conftest import htmx_settled, playwright_api, sign_in

expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.slow]

ENDED_WITHIN_SECONDS = 5
# One route of each HTTP service that a client may call.
CLIENT_ROUTES = ("/api/me", "/api/support/conversation", "/api/monitor/summary")


def access_token(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "access_token_cookie")


def statuses(base_url: str, token: str) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {token}"}
    return {route: requests.get(base_url + route, headers=headers, timeout=5).status_code
            for route in CLIENT_ROUTES}


def test_log_out_everywhere_ends_the_session_in_every_service_and_tab(new_page, create_account, stack):
    account = create_account("client", "Sam Sessions")
    laptop, phone = new_page(), new_page()
    sign_in(laptop, account.email, account.password)
    sign_in(phone, account.email, account.password)
    phone.wait_for_function("() => window.ems && window.ems.socket && window.ems.socket.connected")
    token = access_token(phone)
    assert statuses(stack.url, token) == dict.fromkeys(CLIENT_ROUTES, 200)

    laptop.click("a.who")
    expect(laptop).to_have_url(re.compile(r"/profile$"))
    expect(laptop.locator("#profile-name")).to_have_text("Sam Sessions")
    expect(laptop.locator("#profile-role")).to_have_text("client")
    htmx_settled(laptop)
    laptop.click("#logout-everywhere")
    started = time.monotonic()
    expect(laptop).to_have_url(re.compile(r"/login"))

    # The other tab: its socket is closed, its refresh token refused, so it signs in again.
    phone.wait_for_url(re.compile(r"/login"), timeout=ENDED_WITHIN_SECONDS * 1000)
    while (seen := statuses(stack.url, token)) != dict.fromkeys(CLIENT_ROUTES, 401):
        assert time.monotonic() - started < ENDED_WITHIN_SECONDS, seen
        time.sleep(0.1)
    # Signing in again starts a new session that works everywhere.
    sign_in(laptop, account.email, account.password)
    assert statuses(stack.url, access_token(laptop)) == dict.fromkeys(CLIENT_ROUTES, 200)
