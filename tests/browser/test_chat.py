"""A client and an administrator chat live in two real Chromium contexts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import htmx_settled, sign_in
from tests.processes import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLIENT = ("alice@ems.local", "alice-demo-2024")
ADMIN = ("admin@ems.local", "admin-demo-2024")
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def demo_stack(stack):
    """The whole stack with the demo users."""
    # The stack has a database and vhost of its own: seed with its environment.
    subprocess.run([sys.executable, "-m", "web", "seed"], cwd=ROOT, check=True, capture_output=True,
                   timeout=120, env={**os.environ, **stack.env})
    return stack


def signed_in_page(chromium, stack, credentials, path):
    context = chromium.new_context(base_url=stack.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, *credentials, next_path=path)
    page.wait_for_url("**" + path + "*")
    return page


def test_client_and_admin_chat_live_with_typing_and_seen(demo_stack, chromium):
    client = signed_in_page(chromium, demo_stack, CLIENT, "/")
    client.click(".chat-toggle")
    field = client.locator("#chat-widget textarea")
    field.fill("I want to talk to a human <b>now</b>")
    field.press("Enter")
    mine = client.locator("#chat-widget .chat-message.from-client").last
    expect(mine.locator(".chat-body")).to_have_text("I want to talk to a human <b>now</b>")
    expect(client.locator("#chat-widget .chat-message.from-bot .chat-bot-badge").last).to_be_visible()
    expect(client.locator("#chat-widget .chat-state")).to_have_text("Waiting for an administrator")

    admin = signed_in_page(chromium, demo_stack, ADMIN, "/support/inbox")
    row = admin.locator(".inbox-row", has_text="Alice Martin")
    expect(row.locator(".chat-state")).to_have_text("Waiting for an administrator")
    row.locator("a").click()
    thread = admin.locator("#conversation-pane .admin-thread")
    expect(thread.locator(".chat-message.from-client .chat-body").last).to_have_text(
        "I want to talk to a human <b>now</b>")
    # Opening the conversation marks it read: the client sees "Seen".
    expect(client.locator("#chat-widget .chat-seen")).to_be_visible()

    # The admin types: the client sees the indicator, which goes away with the message.
    admin_field = thread.locator("textarea")
    admin_field.press_sequentially("Hello Alice", delay=20)
    expect(client.locator("#chat-widget .chat-typing")).to_have_text("Support is typing…")
    admin_field.press("Enter")
    reply = client.locator("#chat-widget .chat-message.from-admin .chat-body").last
    expect(reply).to_have_text("Hello Alice")
    expect(client.locator("#chat-widget .chat-typing")).to_be_hidden()
    expect(client.locator("#chat-widget .chat-state")).to_contain_text("With an administrator")

    # The client answers and types; the admin sees both, and "Seen" once the client has read.
    expect(thread.locator(".chat-seen")).to_be_visible()
    field.press_sequentially("Thanks", delay=20)
    expect(thread.locator(".chat-typing")).to_contain_text("is typing…")
    field.press("Enter")
    expect(thread.locator(".chat-message.from-client .chat-body").last).to_have_text("Thanks")
    # A typing indicator without a refresh goes away by itself after 5 s.
    admin_field.press_sequentially("One more", delay=20)
    expect(client.locator("#chat-widget .chat-typing")).to_be_visible()
    expect(client.locator("#chat-widget .chat-typing")).to_be_hidden(timeout=8000)
    # No HTML from a message ever became markup.
    assert client.locator("#chat-widget .chat-body b").count() == 0
    assert admin.locator(".admin-thread .chat-body b").count() == 0


def test_admin_adds_disables_and_tries_a_bot_rule(demo_stack, chromium):
    admin = signed_in_page(chromium, demo_stack, ADMIN, "/support/rules")
    form = admin.locator("#rules-new form")
    form.locator("input[name=name]").fill("opening hours")
    form.locator("textarea[name=patterns]").fill("opening hours\nwhen + open")
    form.locator("button[type=submit]").click()
    # Without an answer the form comes back with the reason, the typed values kept.
    expect(admin.locator("#rules-new .form-errors")).to_contain_text("an answer is required")
    expect(admin.locator("#rules-new input[name=name]")).to_have_value("opening hours")
    htmx_settled(admin)  # the form was swapped in: its submit goes through htmx once settled
    admin.locator("#rules-new textarea[name=answer]").fill("We answer every day from 8 to 20.")
    admin.locator("#rules-new button[type=submit]").click()
    expect(admin.locator("#rules-new .form-ok")).to_contain_text("opening hours")
    row = admin.locator("#rules-table .rule", has_text="opening hours")
    expect(row).to_be_visible()
    htmx_settled(admin)

    admin.fill(".rules-try input", "When are you open?")
    expect(admin.locator("#try-result")).to_contain_text("opening hours")
    row.get_by_role("button", name="Disable").click()
    expect(admin.locator("#rules-table .rule.disabled", has_text="opening hours")).to_be_visible()
    admin.fill(".rules-try input", "When are you open today?")
    expect(admin.locator("#try-result")).to_contain_text("No rule fires")


def test_bot_answers_with_the_clients_consumption_from_the_monitor(demo_stack, chromium):
    admin = signed_in_page(chromium, demo_stack, ADMIN, "/support/inbox")
    client = signed_in_page(chromium, demo_stack, ("bob@ems.local", "bob-demo-2024"), "/")
    client.click(".chat-toggle")
    field = client.locator("#chat-widget textarea")
    field.fill("What is the limit of my water boiler?")
    field.press("Enter")
    answer = client.locator("#chat-widget .chat-message.from-bot .chat-body").last
    expect(answer).to_contain_text("Water boiler: 1.20 kWh per hour")
    expect(answer).not_to_contain_text("Main meter")
    expect(answer).not_to_contain_text("Heat pump")  # Alice's device
    # The open inbox shows the new conversation live, with its unread count.
    row = admin.locator(".inbox-row", has_text="Bob Novak")
    expect(row.locator(".inbox-unread")).to_have_text("1")
    expect(row.locator(".chat-state")).to_have_text("Assistant")
