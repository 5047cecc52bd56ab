"""Security in a real Chromium through the gateway: `next` never leads off the site,
every page works under the strict Content-Security-Policy, and the gateway's
address is the one the rate limits count."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
import requests

from common.security import CONTENT_SECURITY_POLICY
from tests.browser.conftest import htmx_settled, playwright_api, sign_in

expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.slow]

LEAVING = ["/\\evil.example", "/\\\tevil.example", "//evil.example", "https://evil.example",
           "javascript:alert(1)", "/%2F%2Fevil.example"]


@pytest.fixture(scope="module")
def client_account(portal, create_account):
    """A client with one device (so the dashboard loads its live totals)."""
    from web.inventory import create_device

    account = create_account("client", "Security Client")
    with portal.app_context():
        device = create_device({"name": "Kettle", "max_hourly_kwh": "2.0", "address": "1 Safe Street",
                                "owner_id": account.user_id})
    return account, str(device.id)


@pytest.fixture(scope="module")
def admin_account(create_account):
    return create_account("admin", "Security Admin")


def page_with_refresh_cookie_only(new_page, account, evil_requests: list):
    """Return a page signed in whose access token is gone: login.js renews it and follows `next`."""
    page = new_page()

    def evil(route):
        # Were the browser sent off the site, it would land here instead of the network.
        evil_requests.append(route.request.url)
        route.fulfill(status=200, body="evil", content_type="text/plain")

    page.context.route(re.compile(r"^https?://evil\.example/.*"), evil)
    sign_in(page, account.email, account.password)
    page.context.clear_cookies(name="access_token_cookie")
    return page


@pytest.mark.parametrize("target", LEAVING, ids=repr)
def test_login_js_never_follows_next_off_the_site(new_page, stack, client_account, target):
    account, _ = client_account
    evil_requests = []
    page = page_with_refresh_cookie_only(new_page, account, evil_requests)

    page.goto("/login?next=" + quote(target, safe=""))

    # Renewed, the visitor goes home; a %2F path is still a path of this site (a 404 here).
    expected = "/%2F%2Fevil.example" if target.startswith("/%2F") else "/"
    expect(page).to_have_url(stack.url + expected)
    assert evil_requests == []


def test_login_js_follows_a_path_of_this_site(new_page, client_account):
    account, _ = client_account
    page = page_with_refresh_cookie_only(new_page, account, [])

    page.goto("/login?next=" + quote("/monitor/alerts", safe=""))
    expect(page).to_have_url(re.compile(r"/monitor/alerts$"))


def watch_csp(page) -> list[str]:
    """Collect the page's Content-Security-Policy violations as Chromium reports them."""
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    return violations


def visit(page, path: str) -> None:
    response = page.goto(path)
    assert response.status == 200, path
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    htmx_settled(page)


def test_client_pages_work_under_the_content_security_policy(new_page, client_account):
    account, device_id = client_account
    page = new_page()
    violations = watch_csp(page)
    sign_in(page, account.email, account.password)

    visit(page, "/")
    # htmx loaded the live totals and the chat widget (both need htmx running under the CSP).
    expect(page.locator("#live-totals .loading")).to_have_count(0)
    expect(page.locator("#chat-widget")).not_to_have_attribute("hx-trigger", "load")
    for path in ("/devices", "/monitor/alerts", f"/monitor/devices/{device_id}"):
        visit(page, path)
    assert violations == []


def test_admin_pages_work_under_the_content_security_policy(new_page, admin_account):
    page = new_page()
    violations = watch_csp(page)
    sign_in(page, admin_account.email, admin_account.password)

    for path in ("/admin/users", "/admin/devices", "/monitor/pipeline", "/support/inbox", "/monitor/alerts"):
        visit(page, path)
    # The pipeline's share bars get their width from a script, not a style attribute.
    bars = page.locator(".share-bar")
    if bars.count():
        assert page.evaluate("document.querySelector('.share-bar').style.width").endswith("%")
    assert violations == []


def test_no_page_can_be_framed_by_another_site(new_page, stack):
    # Another origin on this machine (127.0.0.1 is not localhost to the browser).
    framer = stack.url.replace("localhost", "127.0.0.1") + "/framer"
    page = new_page()
    page.context.route(framer, lambda route: route.fulfill(status=200, content_type="text/html", body=(
        f'<iframe id="real" src="{stack.url}/login"></iframe>'
        f'<iframe id="control" src="{stack.url}/login?control=1"></iframe>')))

    def without_frame_headers(route):
        # The control: the same page with its anti-framing headers removed does show up.
        response = route.fetch()
        headers = {name: value for name, value in response.headers.items()
                   if name.lower() not in ("x-frame-options", "content-security-policy")}
        route.fulfill(response=response, headers=headers)

    page.context.route(f"{stack.url}/login?control=1", without_frame_headers)
    page.goto(framer)
    control = page.frame_locator("#control")
    expect(control.locator("input[name=email]")).to_be_visible()
    real = next(frame for frame in page.frames if frame.name == "" and frame != page.main_frame
                and "control" not in frame.url)
    assert not real.url.startswith(stack.url), real.url
    assert real.locator("input[name=email]").count() == 0, "the sign-in form was shown inside the frame"


def test_the_login_limit_counts_the_address_the_gateway_saw(stack, portal):
    """A client that sends its own X-Forwarded-For still spends the one address's attempts."""
    from sqlalchemy import text

    from web.extensions import db

    limit = stack.settings.login_attempts_per_address_per_minute
    statuses = []
    try:
        for number in range(limit + 1):
            response = requests.post(f"{stack.url}/login", timeout=10, allow_redirects=False,
                                     headers={"X-Forwarded-For": f"10.{number}.0.1"},
                                     data={"email": f"nobody{number}@example.test", "password": "guess"})
            statuses.append(response.status_code)
    finally:
        # This stack's other tests sign in from the same address.
        with portal.app_context():
            db.session.execute(text("DELETE FROM login_attempts"))
            db.session.commit()
    assert statuses[:limit] == [401] * limit
    assert statuses[limit] == 429
