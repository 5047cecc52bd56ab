"""The administrators' support tools in real Chromium: canned replies with "/", private notes,
assignment, the inbox's views and search, the client's rating, the transcript and the stats page."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import htmx_settled, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def people(create_account):
    """A client, an administrator and a colleague to assign to, all new (support hears of them by events)."""
    tag = secrets.token_hex(2)
    return {"client": create_account("client", f"Clara Quill {tag}"),
            "admin": create_account("admin", f"Ada Tools {tag}"),
            "colleague": create_account("admin", f"Colin Mate {tag}"), "tag": tag}


def signed_in(new_page, account, path):
    page = new_page()
    sign_in(page, account.email, account.password, next_path=path)
    page.wait_for_url("**" + path + "*")
    return page


def test_an_administrator_answers_with_a_canned_reply_notes_assigns_and_the_client_rates(new_page, people):
    admin = signed_in(new_page, people["admin"], "/support/canned")
    title = f"Welcome {people['tag']}"
    admin.fill(".canned-new input[name=title]", title)
    admin.fill(".canned-new textarea[name=text]", "Hello {client}!")
    admin.click(".canned-new button[type=submit]")
    expect(admin.locator(".canned-new .form-errors")).to_contain_text("unknown placeholder {client}")
    htmx_settled(admin)
    admin.fill(".canned-new textarea[name=text]", "Hello {client_first_name}, {admin_name} here.")
    admin.click(".canned-new button[type=submit]")
    expect(admin.locator(".form-ok")).to_contain_text(title)

    client = signed_in(new_page, people["client"], "/")
    client.click(".chat-toggle")
    client.fill("#chat-widget textarea", "talk to a human")
    client.press("#chat-widget textarea", "Enter")
    expect(client.locator("#chat-widget .chat-state")).to_have_text("Waiting for an administrator")

    # The inbox: "Unassigned" and a search by name find the client's conversation.
    admin.goto("/support/inbox")
    admin.get_by_label("Search conversations").fill("Clara Quill " + people["tag"])
    row = admin.locator(".inbox-row", has_text="Clara Quill")
    expect(row).to_have_count(1)
    admin.locator(".inbox-views label", has_text="Unassigned").click()
    expect(row).to_have_count(1)
    admin.locator(".inbox-views label", has_text="Resolved").click()
    expect(row).to_have_count(0)
    admin.locator(".inbox-views label", has_text="All").click()
    row.locator("a").click()
    thread = admin.locator("#conversation-pane .admin-thread")
    expect(thread.locator(".chat-message.from-client .chat-body").last).to_have_text("talk to a human")
    htmx_settled(admin)

    # "/" opens the canned replies, typing filters, ↓/↑ choose, Escape closes, Enter inserts.
    field = thread.locator(".chat-form textarea")
    field.press_sequentially("/welc", delay=30)
    picker = thread.locator(".canned-picker")
    expect(picker.locator(".canned-option")).to_have_count(1)
    expect(picker.locator(".canned-option.active")).to_contain_text(title)
    field.press("Escape")
    expect(picker).to_have_count(0)
    field.press("Backspace")
    expect(picker.locator(".canned-option.active")).to_contain_text(title)
    field.press("ArrowDown")
    field.press("ArrowUp")
    field.press("Enter")
    expect(field).to_have_value(f"Hello Clara, Ada Tools {people['tag']} here.")
    field.press("Enter")  # now Enter sends
    expect(client.locator("#chat-widget .chat-message.from-admin .chat-body").last).to_have_text(
        f"Hello Clara, Ada Tools {people['tag']} here.")

    # A private note: styled apart in the inbox, never on the client's side.
    secret = f"Wiring checked {people['tag']} <b>twice</b>"
    admin.fill(".chat-note-form textarea", secret)
    admin.click(".chat-note-form button[type=submit]")
    expect(admin.locator(".chat-note .chat-body")).to_have_text(secret)
    assert admin.locator(".chat-note b").count() == 0
    expect(client.locator("#chat-widget .chat-message").last).to_be_visible()
    assert secret not in client.content()

    # Assign to the colleague (support knows administrators from the portal's events).
    htmx_settled(admin)
    colleague = people["colleague"]
    admin.locator(".chat-assign select").select_option(str(colleague.user_id))
    expect(admin.locator("#conversation-pane .chat-header .chat-state")).to_contain_text("Colin Mate")
    expect(client.locator("#chat-widget .chat-state")).to_contain_text("Colin Mate")

    # Resolve: the client is asked to rate, once.
    htmx_settled(admin)
    admin.click("#conversation-pane .chat-resolve")
    prompt = client.locator("#chat-rating form")
    expect(prompt).to_contain_text("How well did we help you?")
    prompt.locator("label", has_text="4 ★").click()
    prompt.locator("textarea[name=comment]").fill("Fast <i>and</i> kind")
    prompt.locator("button[type=submit]").click()
    expect(client.locator("#chat-rating")).to_contain_text("Thank you for your rating.")
    client.reload()
    expect(client.locator("#chat-widget #chat-rating")).to_have_count(1)  # the widget is back
    expect(client.locator("#chat-rating form")).to_have_count(0)

    # The administrators see the rating beside the conversation, live.
    expect(admin.locator(".chat-rating-row .stars")).to_have_attribute("aria-label", "4 of 5 stars")
    expect(admin.locator(".chat-rating-comment")).to_have_text("Fast <i>and</i> kind")


def test_the_transcript_downloads_and_the_stats_page_draws_the_demo_history(new_page, people, stack):
    from support import create_app
    from support.demo import Person, seed_demo_history

    support_app = create_app(stack.settings)
    tag = people["tag"]
    with support_app.app_context():
        base = 2_000_000_000 + secrets.randbelow(10**6)
        seed_demo_history([Person(people["admin"].user_id, "Ada", "admin"),
                           Person(base, f"Demo Dora {tag}", "client")])

    admin = signed_in(new_page, people["admin"], "/support/stats")
    expect(admin.locator("h1")).to_have_text("Support stats")
    assert int(admin.get_by_test_id("resolved-total").inner_text()) >= 7
    expect(admin.locator("svg.support-chart")).to_have_count(4)
    assert admin.locator("svg.support-chart rect.series-0").count() >= 14
    expect(admin.get_by_test_id("median-first-response")).to_contain_text("min")
    expect(admin.get_by_test_id("bot-only-share")).to_contain_text("%")

    admin.goto("/support/inbox")
    admin.locator(".inbox-views label", has_text="Resolved").click()
    admin.get_by_label("Search conversations").fill(f"Demo Dora {tag}")
    admin.locator(".inbox-row a", has_text="Demo Dora").click()
    htmx_settled(admin)
    with admin.expect_download() as download:
        admin.click(".chat-transcript")
    text = open(download.value.path(), encoding="utf-8").read()
    assert text.startswith("Support conversation") and "Times are in " in text
    assert f"Demo Dora {tag} (client):" in text
