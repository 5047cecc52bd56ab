"""The administrator's HTMX pages: users and devices, inline editing, assignment."""

import pytest

from common.auth import Identity, mint_access_token
from tests.web.conftest import PASSWORD, Person, outbox_events, sign_in, snapshot
from web.extensions import db
from web.models import Device, User


def get_device(app, device_id):
    with app.app_context():
        return db.session.get(Device, device_id)


def get_user(app, user_id):
    with app.app_context():
        return db.session.get(User, user_id)


def test_users_page_lists_searches_and_pages(app, admin_browser, make_user):
    for number in range(25):
        make_user("client", name=f"Client {number:02d}")
    page = admin_browser.get("/admin/users")
    assert page.status_code == 200 and b"<html" in page.data and b"Page 1 of 2" in page.data
    fragment = admin_browser.htmx("GET", "/admin/users?q=Client%2007", headers={"HX-Target": "users-table"})
    assert b"<html" not in fragment.data
    assert b"Client 07" in fragment.data and b"Client 08" not in fragment.data
    second = admin_browser.htmx("GET", "/admin/users?page=2", headers={"HX-Target": "users-table"})
    assert b"Page 2 of 2" in second.data


def test_search_treats_percent_and_underscore_literally(app, admin_browser, make_user):
    make_user("client", name="Plain Name")
    fragment = admin_browser.htmx("GET", "/admin/users?q=%25", headers={"HX-Target": "users-table"})
    assert b"No user matches" in fragment.data


def test_admin_creates_a_user_and_the_table_is_told_to_refresh(app, admin_browser):
    response = admin_browser.htmx(
        "POST",
        "/admin/users",
        data={
            "name": "Carol Client",
            "email": "carol@example.test",
            "role": "client",
            "password": "carol password",
        },
    )
    assert response.status_code == 201
    assert response.headers["HX-Trigger"] == "users-changed"
    assert b"User Carol Client created." in response.data
    assert sign_in(app, Person(0, "carol@example.test", "Carol Client", "client", "carol password"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "", "email": "x@example.test", "password": "long enough"}, b"name is required"),
        (
            {"name": "x" * 10_000, "email": "x@example.test", "password": "long enough"},
            b"at most 100 characters",
        ),
        ({"name": "X", "email": "nope", "password": "long enough"}, b"e-mail must look like"),
        ({"name": "X", "email": "x@example.test", "password": "short"}, b"at least 8 characters"),
        (
            {"name": "X", "email": "x@example.test", "password": "long enough", "role": "root"},
            b"role must be",
        ),
    ],
)
def test_bad_user_input_is_shown_in_the_form_and_changes_nothing(app, admin_browser, fields, message):
    before = snapshot(app)
    response = admin_browser.htmx("POST", "/admin/users", data=fields)
    assert response.status_code == 422
    assert message in response.data and b'id="user-create"' in response.data
    assert snapshot(app) == before


def test_duplicate_email_is_refused(app, admin_browser, make_user):
    alice = make_user("client")
    response = admin_browser.htmx(
        "POST",
        "/admin/users",
        data={"name": "Other", "email": alice.email.upper(), "password": "long enough"},
    )
    assert response.status_code == 422 and b"already exists" in response.data


def test_inline_edit_of_a_user(app, admin_browser, make_user):
    alice = make_user("client")
    form = admin_browser.htmx("GET", f"/admin/users/{alice.id}/edit")
    assert b'name="name"' in form.data and b"<html" not in form.data
    saved = admin_browser.htmx(
        "PUT",
        f"/admin/users/{alice.id}",
        data={"name": "Alice Renamed", "role": "admin", "password": "a brand new password"},
    )
    assert saved.status_code == 200 and b"Alice Renamed" in saved.data
    user = get_user(app, alice.id)
    assert (user.name, user.role) == ("Alice Renamed", "admin")
    assert (
        app.test_client()
        .post("/login", data={"email": alice.email, "password": "a brand new password"})
        .status_code
        == 303
    )
    assert (
        app.test_client().post("/login", data={"email": alice.email, "password": PASSWORD}).status_code == 401
    )


def test_inline_edit_error_stays_in_the_row(app, admin_browser, make_user):
    alice = make_user("client")
    before = snapshot(app)
    response = admin_browser.htmx("PUT", f"/admin/users/{alice.id}", data={"name": " ", "role": "client"})
    assert response.status_code == 422
    assert b'class="editing"' in response.data and b"name is required" in response.data
    assert snapshot(app) == before


def test_admin_cannot_delete_themselves(app, admin_browser, admin):
    before = snapshot(app)
    response = admin_browser.htmx("DELETE", f"/admin/users/{admin.id}")
    assert response.status_code == 409
    assert response.headers["HX-Reswap"] == "none"
    assert b"you cannot delete your own account" in response.data
    assert snapshot(app) == before


def test_last_admin_cannot_be_deleted_or_demoted(app, make_user):
    only_admin = make_user("admin")
    # A second administrator signs in, and is then demoted by the first one.
    helper = make_user("admin")
    browser = sign_in(app, helper)
    first = sign_in(app, only_admin)
    assert first.htmx("PUT", f"/admin/users/{helper.id}", data={"role": "client"}).status_code == 200
    before = snapshot(app)
    # The role change ended the helper's sessions: the old admin token is refused at once.
    assert browser.htmx("DELETE", f"/admin/users/{only_admin.id}").status_code == 401
    # A token that still says admin (issued at the same moment as the demotion) meets the
    # rule, which is checked in the database.
    stale = {"Authorization": "Bearer " + mint_access_token(
        app.config["EMS_SETTINGS"], Identity(helper.id, "admin", helper.name, token_version=1))}
    refused = app.test_client().delete(f"/api/users/{only_admin.id}", headers=stale)
    assert refused.status_code == 409 and "last administrator" in refused.json["error"]
    demoted = app.test_client().put(f"/api/users/{only_admin.id}", json={"role": "client"}, headers=stale)
    assert demoted.status_code == 409 and "last administrator" in demoted.json["error"]
    assert snapshot(app) == before


def test_deleting_a_client_unassigns_their_devices_with_events(app, admin_browser, make_user, make_device):
    alice = make_user("client")
    heat_pump = make_device("Heat pump", owner_id=alice.id)
    response = admin_browser.htmx("DELETE", f"/admin/users/{alice.id}")
    assert response.status_code == 200 and b"1 device(s) are now unassigned" in response.data
    assert get_user(app, alice.id) is None
    assert get_device(app, heat_pump).owner_id is None
    events = outbox_events(app)
    assert [e["type"] for e in events[-2:]] == ["device.updated", "user.deleted"]
    assert events[-2]["device"] == {
        "id": heat_pump,
        "name": "Heat pump",
        "owner_id": None,
        "max_hourly_kwh": 2.5,
    }
    assert events[-1]["user"]["id"] == alice.id


def test_admin_creates_edits_and_deletes_a_device(app, admin_browser, make_user):
    alice = make_user("client")
    created = admin_browser.htmx(
        "POST",
        "/admin/devices",
        data={
            "name": "EV charger",
            "description": "Garage",
            "address": "12 Elm St",
            "max_hourly_kwh": "7.4",
            "owner_id": str(alice.id),
        },
    )
    assert created.status_code == 201 and created.headers["HX-Trigger"] == "devices-changed"
    table = admin_browser.htmx("GET", "/admin/devices", headers={"HX-Target": "devices-table"})
    with app.app_context():
        device = db.session.query(Device).one()
    assert device.owner_id == alice.id and float(device.max_hourly_kwh) == 7.4
    assert f'id="device-{device.id}"'.encode() in table.data

    saved = admin_browser.htmx(
        "PUT",
        f"/admin/devices/{device.id}",
        data={"name": "EV charger (32 A)", "description": "", "address": "12 Elm St", "max_hourly_kwh": "11"},
    )
    assert saved.status_code == 200 and b"EV charger (32 A)" in saved.data
    assert float(get_device(app, device.id).max_hourly_kwh) == 11

    deleted = admin_browser.htmx("DELETE", f"/admin/devices/{device.id}")
    assert deleted.status_code == 200 and b"Device EV charger (32 A) deleted." in deleted.data
    assert get_device(app, device.id) is None
    assert [e["type"] for e in outbox_events(app)][-3:] == [
        "device.created",
        "device.updated",
        "device.deleted",
    ]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("-1", b"greater than 0"),
        ("0", b"greater than 0"),
        ("abc", b"must be a number"),
        ("", b"is required"),
    ],
)
def test_bad_limit_is_shown_in_place_and_changes_nothing(app, admin_browser, make_device, limit, message):
    device_id = make_device("Boiler")
    before = snapshot(app)
    created = admin_browser.htmx("POST", "/admin/devices", data={"name": "X", "max_hourly_kwh": limit})
    edited = admin_browser.htmx(
        "PUT", f"/admin/devices/{device_id}", data={"name": "X", "max_hourly_kwh": limit}
    )
    for response in (created, edited):
        assert response.status_code == 422 and message in response.data
    assert snapshot(app) == before


def test_assign_and_unassign_a_device(app, admin_browser, make_user, make_device):
    alice = make_user("client")
    device_id = make_device("Heat pump")
    assigned = admin_browser.htmx(
        "PUT", f"/admin/devices/{device_id}/owner", data={"owner_id": str(alice.id)}
    )
    assert assigned.status_code == 200 and f"assigned to {alice.name}".encode() in assigned.data
    assert get_device(app, device_id).owner_id == alice.id
    unassigned = admin_browser.htmx("PUT", f"/admin/devices/{device_id}/owner", data={"owner_id": ""})
    assert b"Heat pump unassigned." in unassigned.data
    assert get_device(app, device_id).owner_id is None


def test_devices_cannot_be_assigned_to_admins_or_unknown_users(app, admin_browser, admin, make_device):
    device_id = make_device("Heat pump")
    before = snapshot(app)
    for owner in (str(admin.id), "999999", "abc"):
        response = admin_browser.htmx("PUT", f"/admin/devices/{device_id}/owner", data={"owner_id": owner})
        assert response.status_code == 422 and b"Not assigned" in response.data
    assert snapshot(app) == before


def test_unknown_ids_get_404(app, admin_browser):
    for url in (
        "/admin/users/999999/edit",
        "/admin/devices/0b6d5c7e-8a4f-4c1e-9d5b-2f6a7e8b9c01/edit",
        "/admin/devices/not-a-uuid/edit",
    ):
        assert admin_browser.htmx("GET", url).status_code == 404
    assert admin_browser.htmx("DELETE", "/admin/users/999999").status_code == 404


def test_client_sees_only_their_devices_on_dashboard_and_list(app, make_user, make_device):
    alice, bob = make_user("client"), make_user("client")
    make_device("Alice heat pump", owner_id=alice.id)
    make_device("Bob boiler", owner_id=bob.id)
    browser = sign_in(app, alice)
    for url in ("/", "/devices"):
        page = browser.get(url)
        assert page.status_code == 200
        assert b"Alice heat pump" in page.data and b"Bob boiler" not in page.data
    assert b'hx-get="/monitor/fragments/dashboard"' in browser.get("/").data


def test_client_without_devices_sees_an_empty_state(app, make_user):
    browser = sign_in(app, make_user("client"))
    assert b"No devices yet" in browser.get("/").data
    assert b"No devices are assigned to you yet." in browser.get("/devices").data


def test_admin_home_is_the_device_list(app, admin_browser):
    response = admin_browser.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/devices"


def test_names_are_escaped_in_pages(app, admin_browser, make_user):
    make_user("client", name="<script>alert(1)</script>")
    page = admin_browser.get("/admin/users")
    assert b"<script>alert(1)</script>" not in page.data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.data


def test_a_client_with_devices_cannot_become_an_admin(app, admin_browser, make_user, make_device):
    alice = make_user("client")
    make_device("Heat pump", owner_id=alice.id)
    before = snapshot(app)
    response = admin_browser.htmx(
        "PUT", f"/admin/users/{alice.id}", data={"name": alice.name, "role": "admin"}
    )
    assert response.status_code == 409 and b"unassign them first" in response.data
    assert snapshot(app) == before


def test_device_search_and_pages(app, admin_browser, make_device):
    for number in range(23):
        make_device(f"Meter {number:02d}", address=f"{number} Long Road")
    make_device("Sauna", address="1 Lake Shore")
    first = admin_browser.htmx("GET", "/admin/devices", headers={"HX-Target": "devices-table"})
    assert b"Page 1 of 2" in first.data and first.data.count(b'<tr id="device-') == 20
    found = admin_browser.htmx("GET", "/admin/devices?q=lake", headers={"HX-Target": "devices-table"})
    assert found.data.count(b'<tr id="device-') == 1 and b"Sauna" in found.data
