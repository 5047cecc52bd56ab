"""Sweeps over every route of the portal: no client reaches another user's data,
and no state-changing request passes without the CSRF header."""

import pytest

from tests.web.conftest import outbox_events, sign_in, snapshot

# Routes that work before signing in: they carry no session to protect.
PUBLIC = {
    ("/login", "GET"),
    ("/login", "POST"),
    ("/signup", "GET"),
    ("/signup", "POST"),
    ("/api/auth/login", "POST"),
    ("/api/openapi.json", "GET"),
}
# What a client may use; everything else must answer 403 to a client.
CLIENT_ALLOWED = PUBLIC | {
    ("/", "GET"),
    ("/devices", "GET"),
    ("/logout", "POST"),
    ("/auth/refresh", "POST"),
    ("/api/me", "GET"),
    ("/api/devices", "GET"),
    ("/api/devices/<uuid:device_id>", "GET"),
    ("/profile", "GET"),
    ("/profile/logout-everywhere", "POST"),  # ends the signed-in user's own sessions only
    ("/profile/preferences", "POST"),  # the signed-in user's own name, zone, notifications
    ("/profile/password", "POST"),  # the signed-in user's own password, the current one required
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# A body that would change something on any route that accepted it.
TAMPERING = {
    "name": "Tampered",
    "max_hourly_kwh": "99",
    "owner_id": "",
    "user_id": "",
    "role": "admin",
    "password": "tampered password",
    "enabled": "false",
    "description": "x",
    "address": "x",
}


def routes(app):
    """Yield (rule, method) for every route except static files."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def url_for_rule(rule, user_id: int, device_id: str) -> str:
    return rule.rule.replace("<int:user_id>", str(user_id)).replace("<uuid:device_id>", device_id)


@pytest.fixture
def victim(app, make_user, make_device):
    """Bob, a client with a device, whose data Alice must not reach."""
    bob = make_user("client", name="Bob Victim", email="bob.victim@example.test")
    device = make_device("Bob's secret meter", owner_id=bob.id, address="7 Private Lane")
    return bob, device


def test_route_lists_are_up_to_date(app):
    known = {(rule.rule, method) for rule, method in routes(app)}
    assert CLIENT_ALLOWED <= known, CLIENT_ALLOWED - known


def test_client_cannot_read_or_change_another_users_data_on_any_route(app, make_user, make_device, victim):
    bob, bobs_device = victim
    alice = make_user("client", name="Alice Attacker")
    make_device("Alice meter", owner_id=alice.id)
    before, events_before = snapshot(app), len(outbox_events(app))
    failures = []
    for rule, method in routes(app):
        browser = sign_in(app, alice)  # fresh each time: the sweep includes /logout
        url = url_for_rule(rule, bob.id, bobs_device)
        for as_json in (False, True):
            headers = {**browser.csrf(), "HX-Request": "true"}
            kwargs = {"json": TAMPERING} if as_json else {"data": TAMPERING}
            response = browser.open(url, method=method, headers=headers, **kwargs)
            body = response.get_data(as_text=True)
            if "Bob's secret meter" in body or "bob.victim@example.test" in body or "7 Private Lane" in body:
                failures.append(f"{method} {rule.rule} shows Bob's data")
            allowed = (rule.rule, method) in CLIENT_ALLOWED
            if not allowed and response.status_code != 403:
                failures.append(f"{method} {rule.rule} answered {response.status_code}, not 403")
    assert failures == []
    assert snapshot(app)["devices"] == before["devices"]
    assert [row for row in snapshot(app)["users"] if row[0] == bob.id] == [
        row for row in before["users"] if row[0] == bob.id
    ]
    # The only events are Alice's own sessions ending (she pressed "log out everywhere").
    assert [(event["type"], event["user"]["id"]) for event in outbox_events(app)[events_before:]] == [
        ("user.updated", alice.id)] * (len(outbox_events(app)) - events_before)


def test_every_state_changing_route_refuses_a_request_without_the_csrf_header(app, admin, make_user, victim):
    bob, bobs_device = victim
    make_user("admin")  # so that even "delete an admin" would be allowed by the rules
    browser = sign_in(app, admin)
    before = snapshot(app)
    checked = []
    for rule, method in routes(app):
        if method not in STATE_CHANGING or (rule.rule, method) in PUBLIC:
            continue
        url = url_for_rule(rule, bob.id, bobs_device)
        for headers in ({"HX-Request": "true"}, {}):
            response = browser.open(url, method=method, headers=headers, data=TAMPERING)
            assert response.status_code in (302, 401), f"{method} {rule.rule}: {response.status_code}"
            assert not any(
                c.startswith(("access_token_cookie=;", 'access_token_cookie=""'))
                for c in response.headers.getlist("Set-Cookie")
            ), f"{method} {rule.rule} signed out"
            json_response = browser.open(url, method=method, headers=headers, json=TAMPERING)
            assert json_response.status_code in (302, 401), f"{method} {rule.rule} (JSON)"
        checked.append(f"{method} {rule.rule}")
    assert snapshot(app) == before
    assert len(checked) >= 12  # the sweep really covered the admin, API and session routes
    # The same session with the header does get through (the refusal was about CSRF only).
    assert browser.htmx("DELETE", f"/admin/users/{bob.id}").status_code == 200
