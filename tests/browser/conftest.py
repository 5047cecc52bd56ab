"""Browser fixtures: Debian's Chromium driven by Playwright, and signed-in pages.

Module-scoped on purpose: Playwright's sync API allows one running instance per
thread, and test modules that launch their own browser must not meet ours.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium():
    """Launch the system's headless Chromium once per test module."""
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium, stack):
    """Return a factory of pages on the stack's gateway, each in its own context (own cookies)."""
    contexts = []

    def make():
        context = chromium.new_context(base_url=stack.url)
        context.set_default_timeout(TIMEOUT_MS)
        playwright_api.expect.set_options(timeout=TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def sign_in(page, email: str, password: str, next_path: str = "") -> None:
    """Sign in through the login form (and wait for the page it leads to)."""
    page.goto("/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def htmx_settled(page) -> None:
    """Wait until htmx has no request, swap or settle in flight.

    htmx binds the `hx-*` attributes of swapped-in content only when it settles
    (20 ms after the swap): an element can be visible before it reacts. Call
    this after a swap and before using what it brought.
    """
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')")


# Every account the browser tests create signs in with this password.
ACCOUNT_PASSWORD = "browser test password"  # noqa: S105 - test accounts only


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    user_id: int


@pytest.fixture(scope="module")
def portal(stack):
    """Return the portal app on the stack's database (to create users and devices)."""
    from web import create_app

    return create_app(stack.settings)


@pytest.fixture(scope="module")
def create_account(portal):
    """Return a function that creates a user of `role` on the stack, with a unique e-mail."""
    from web.accounts import create_user

    def create(role: str, name: str) -> Account:
        email = f"{role}-{secrets.token_hex(4)}@example.test"
        with portal.app_context():
            user = create_user({"email": email, "name": name, "role": role, "password": ACCOUNT_PASSWORD},
                               portal.extensions["ems_password_hasher"])
            return Account(email, ACCOUNT_PASSWORD, user.id)

    return create
