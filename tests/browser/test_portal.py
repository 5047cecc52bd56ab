"""The portal in a real Chromium through the gateway: an administrator creates a
client and a device and assigns it; the client sees exactly that device and is
refused the administration pages."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.browser.conftest import htmx_settled, playwright_api, sign_in

expect = playwright_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def admin_account(create_account):
    """Create an administrator on the stack; return (email, password)."""
    account = create_account("admin", "Browser Admin")
    return account.email, account.password


def test_admin_assigns_a_new_device_to_a_new_client_who_sees_only_it(new_page, admin_account):
    suffix = secrets.token_hex(3)
    client_name, client_email = f"Clara {suffix}", f"clara-{suffix}@example.test"
    client_password = "clara's password"  # noqa: S105 - created for this test only
    device_name = f"Sauna heater {suffix}"

    admin = new_page()
    sign_in(admin, *admin_account)
    expect(admin).to_have_url(re.compile(r"/admin/devices$"))

    # The administrator creates the client.
    admin.goto("/admin/users")
    form = admin.locator("#user-create")
    form.locator("input[name=name]").fill(client_name)
    form.locator("input[name=email]").fill(client_email)
    form.locator("select[name=role]").select_option("client")
    form.locator("input[name=password]").fill(client_password)
    form.locator("button[type=submit]").click()
    expect(admin.locator(".toast", has_text=f"User {client_name} created.")).to_be_visible()
    expect(admin.locator("#users-table tr", has_text=client_email)).to_be_visible()

    # A device with a bad limit is refused in place, then created correctly.
    admin.goto("/admin/devices")
    form = admin.locator("#device-create")
    form.locator("input[name=name]").fill(device_name)
    form.locator("input[name=address]").fill("3 Birch Lane, Lakeside")
    form.locator("input[name=max_hourly_kwh]").fill("-4")
    form.locator("button[type=submit]").click()
    expect(admin.locator("#device-create .field-error")).to_have_text(
        "maximum hourly consumption must be greater than 0")
    htmx_settled(admin)  # the form was swapped in: its submit goes through htmx once settled
    admin.locator("#device-create input[name=max_hourly_kwh]").fill("6.5")
    admin.locator("#device-create button[type=submit]").click()
    expect(admin.locator(".toast", has_text=f"Device {device_name} created.")).to_be_visible()
    row = admin.locator("#devices-table tr", has_text=device_name)
    expect(row).to_be_visible()
    htmx_settled(admin)  # the row came with a table refresh

    # Assigning is one choice in the row.
    row.locator("select[name=owner_id]").select_option(label=f"{client_name} ({client_email})")
    expect(admin.locator(".toast", has_text=f"{device_name} assigned to {client_name}.")).to_be_visible()

    # The client sees exactly that device, on the dashboard and in "My devices".
    client = new_page()
    sign_in(client, client_email, client_password)
    expect(client.locator(".device-card h3")).to_have_text([device_name])
    client.goto("/devices")
    expect(client.locator("#my-devices tbody tr")).to_have_count(1)
    expect(client.locator("#my-devices tbody tr")).to_contain_text(device_name)
    expect(client.locator("#my-devices tbody tr")).to_contain_text("6.5 kWh")

    # An administration URL typed by the client gets the 403 page.
    response = client.goto("/admin/users")
    assert response.status == 403
    expect(client.locator("h1")).to_contain_text("403")
    expect(client.get_by_text("You do not have access to this page.")).to_be_visible()


def test_inline_edit_error_appears_in_the_row(new_page, admin_account):
    admin = new_page()
    sign_in(admin, *admin_account, next_path="/admin/users")
    row = admin.locator("#users-table tr", has_text=admin_account[0])
    row.get_by_role("button", name="Edit").click()
    editing = admin.locator("#users-table tr.editing")
    expect(editing).to_be_visible()
    htmx_settled(admin)
    editing.locator("input[name=name]").fill("   ")
    editing.get_by_role("button", name="Save").click()
    expect(admin.locator("#users-table tr.editing .field-error")).to_have_text("name is required")
    htmx_settled(admin)
    admin.locator("#users-table tr.editing").get_by_role("button", name="Cancel").click()
    expect(admin.locator("#users-table tr", has_text=admin_account[0])).to_contain_text("Browser Admin")


def test_expired_access_token_is_renewed_silently_and_logout_ends_the_session(new_page, admin_account):
    admin = new_page()
    sign_in(admin, *admin_account)
    # The access token is gone (as after 15 idle minutes); the refresh cookie remains.
    admin.context.clear_cookies(name="access_token_cookie")
    admin.goto("/admin/users")
    expect(admin).to_have_url(re.compile(r"/admin/users$"))
    expect(admin.locator("h1")).to_have_text("Users")

    admin.get_by_role("button", name="Log out").click()
    expect(admin).to_have_url(re.compile(r"/login$"))
    admin.goto("/admin/users")
    expect(admin).to_have_url(re.compile(r"/login\?next="))
    expect(admin.locator("h1")).to_have_text("Sign in")
