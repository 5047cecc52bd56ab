"""Sessions that can be ended: token versions, the Profile page's "log out everywhere",
and refresh tokens that rotate on every use and revoke their family when replayed."""

# ruff: noqa: S106 - test credentials
from __future__ import annotations

import json
import time
from datetime import timedelta

import jwt
import pytest
from flask_jwt_extended import decode_token

from common.auth import Identity, KnownSessions, SessionVersions, mint_access_token
from common.messages import InvalidMessage, parse_event
from tests.web.conftest import outbox_events, sign_in

REFRESH_PATH = "/auth/refresh"


def refresh_cookie(browser) -> tuple[str, str]:
    """Return the browser's refresh token and its CSRF value, as a thief would copy them."""
    return (browser.get_cookie("refresh_token_cookie", path=REFRESH_PATH).value,
            browser.get_cookie("csrf_refresh_token").value)


def use_refresh_token(app, stolen: tuple[str, str]):
    """Post a copied refresh token from a browser of its own."""
    token, csrf = stolen
    client = app.test_client()
    client.set_cookie("refresh_token_cookie", token, path=REFRESH_PATH)
    return client.post(REFRESH_PATH, headers={"X-CSRF-TOKEN": csrf})


def bearer(browser) -> dict:
    return {"Authorization": "Bearer " + browser.get_cookie("access_token_cookie").value}


def me(app, headers: dict) -> int:
    return app.test_client().get("/api/me", headers=headers).status_code


def test_tokens_carry_the_users_token_version_and_session(app, make_user):
    browser = sign_in(app, make_user("client"))
    with app.app_context():
        access = decode_token(browser.get_cookie("access_token_cookie").value)
        refresh = decode_token(refresh_cookie(browser)[0])
    assert access["ver"] == 0 and refresh["ver"] == 0
    assert access["sid"] == refresh["sid"]


def test_a_role_change_ends_the_users_sessions(app, admin_browser, make_user):
    alice = make_user("client")
    browser = sign_in(app, alice)
    old = bearer(browser)
    assert me(app, old) == 200
    assert admin_browser.htmx("PUT", f"/admin/users/{alice.id}", data={"role": "admin"}).status_code == 200
    assert me(app, old) == 401
    assert browser.get("/devices").status_code == 302  # to the sign-in page
    assert use_refresh_token(app, refresh_cookie(browser)).status_code == 401
    event = outbox_events(app)[-1]
    assert event["type"] == "user.updated" and event["user"]["token_version"] == 1


def test_a_password_reset_ends_the_users_sessions_but_a_new_name_does_not(app, admin_browser, make_user):
    alice = make_user("client")
    browser = sign_in(app, alice)
    old = bearer(browser)
    assert admin_browser.htmx("PUT", f"/admin/users/{alice.id}", data={"name": "Alice B"}).status_code == 200
    assert me(app, old) == 200
    reset = admin_browser.htmx("PUT", f"/admin/users/{alice.id}", data={"password": "a brand new secret"})
    assert reset.status_code == 200
    assert me(app, old) == 401
    event = outbox_events(app)[-1]
    assert (event["type"], event["user"]["name"], event["user"]["token_version"]) == (
        "user.updated", "Alice B", 1)
    # The new password opens a new session, which works.
    alice.password = "a brand new secret"
    assert me(app, bearer(sign_in(app, alice))) == 200


def test_a_deleted_users_access_token_is_refused_at_once(app, admin_browser, make_user):
    alice = make_user("client")
    old = bearer(sign_in(app, alice))
    assert admin_browser.htmx("DELETE", f"/admin/users/{alice.id}").status_code == 200
    assert me(app, old) == 401


def test_profile_page_shows_name_and_role_and_is_linked_from_the_user_menu(app, make_user):
    browser = sign_in(app, make_user("client", name="Alice Profile"))
    page = browser.get("/profile").get_data(as_text=True)
    assert "Alice Profile" in page and "client" in page and "Log out everywhere" in page
    assert 'href="/profile"' in browser.get("/devices").get_data(as_text=True)
    assert app.test_client().get("/profile").status_code == 302


def test_log_out_everywhere_ends_every_session_of_the_user_only(app, make_user):
    alice, bob = make_user("client"), make_user("client")
    laptop, phone, bobs = sign_in(app, alice), sign_in(app, alice), sign_in(app, bob)
    phone_refresh = refresh_cookie(phone)
    response = laptop.htmx("POST", "/profile/logout-everywhere")
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/login"
    assert laptop.get_cookie("access_token_cookie") is None
    assert me(app, bearer(phone)) == 401
    assert phone.get("/devices").status_code == 302
    assert use_refresh_token(app, phone_refresh).status_code == 401
    assert me(app, bearer(bobs)) == 200
    event = outbox_events(app)[-1]
    assert (event["type"], event["user"]["id"], event["user"]["token_version"]) == (
        "user.updated", alice.id, 1)
    assert me(app, bearer(sign_in(app, alice))) == 200  # signing in again works


def test_log_out_everywhere_needs_the_csrf_header(app, make_user):
    browser = sign_in(app, make_user("client"))
    assert browser.post("/profile/logout-everywhere").status_code in (302, 401)
    assert me(app, bearer(browser)) == 200


def test_refresh_rotates_the_refresh_token(app, make_user):
    browser = sign_in(app, make_user("client"))
    first = refresh_cookie(browser)
    response = browser.post(REFRESH_PATH, headers={"X-CSRF-TOKEN": first[1]})
    assert response.status_code == 200
    second = refresh_cookie(browser)
    assert second[0] != first[0]
    with app.app_context():
        assert decode_token(second[0])["sid"] == decode_token(first[0])["sid"]
    assert browser.post(REFRESH_PATH, headers={"X-CSRF-TOKEN": second[1]}).status_code == 200


def test_a_replayed_refresh_token_revokes_its_whole_family(app, make_user, monkeypatch):
    # Replayed after the window in which a second use is one browser racing itself.
    monkeypatch.setattr("web.sessions.REFRESH_REUSE_GRACE", timedelta(0))
    alice = make_user("client")
    owner, other_session = sign_in(app, alice), sign_in(app, alice)
    stolen = refresh_cookie(owner)
    assert owner.post(REFRESH_PATH, headers={"X-CSRF-TOKEN": stolen[1]}).status_code == 200
    # The thief replays the copy: refused, and the owner's newer token dies with it.
    replay = use_refresh_token(app, stolen)
    assert replay.status_code == 401
    assert owner.post(REFRESH_PATH, headers={"X-CSRF-TOKEN": refresh_cookie(owner)[1]}).status_code == 401
    # Another sign-in of the same user is another family: it lives on.
    assert other_session.post(REFRESH_PATH,
                              headers={"X-CSRF-TOKEN": refresh_cookie(other_session)[1]}).status_code == 200


def test_two_refreshes_of_one_browser_at_once_both_succeed_and_end_nothing(app, make_user):
    browser = sign_in(app, make_user("client"))
    token = refresh_cookie(browser)
    assert use_refresh_token(app, token).status_code == 200
    # The same token a moment later (another tab, another script): no theft, no revocation.
    assert use_refresh_token(app, token).status_code == 200
    assert browser.post(REFRESH_PATH, headers={"X-CSRF-TOKEN": refresh_cookie(browser)[1]}).status_code == 200


def test_a_refresh_token_replayed_after_logout_is_refused(app, make_user):
    browser = sign_in(app, make_user("client"))
    kept = refresh_cookie(browser)
    assert browser.htmx("POST", "/logout").status_code == 204
    assert use_refresh_token(app, kept).status_code == 401


def test_a_token_without_a_version_counts_as_version_zero(app, admin_browser, make_user):
    alice = make_user("client")
    settings = app.config["EMS_SETTINGS"]
    with app.app_context():
        unversioned = mint_access_token(settings, Identity(alice.id, "client", alice.name))
    with app.app_context():
        claims = decode_token(unversioned)
    claims.pop("ver")
    legacy = {"Authorization": "Bearer " + jwt.encode(claims, settings.jwt_secret, algorithm="HS256")}
    assert me(app, legacy) == 200
    admin_browser.htmx("PUT", f"/admin/users/{alice.id}", data={"password": "a brand new secret"})
    assert me(app, legacy) == 401


def test_user_events_without_a_token_version_mean_version_zero_and_bad_ones_are_refused():
    event = {"sequence": 1, "type": "user.updated", "occurred_at": "2026-12-01T00:00:00+00:00",
             "user": {"id": 5, "name": "Ann", "role": "client"}}
    assert parse_event(json.dumps(event).encode()).user.token_version == 0
    for bad in (-1, True, "2", 2**31):
        event["user"]["token_version"] = bad
        with pytest.raises(InvalidMessage, match="token_version"):
            parse_event(json.dumps(event).encode())


def test_session_versions_are_looked_up_again_after_their_cache_time():
    store = {7: KnownSessions(version=0)}
    lookups = []

    def lookup(user_id):
        lookups.append(user_id)
        return store.get(user_id)

    sessions = SessionVersions(lookup, max_age_seconds=0.2)
    claims = {"sub": "7", "ver": 0}
    assert sessions.admit(claims) and sessions.admit(claims) and lookups == [7]
    store[7] = KnownSessions(version=1)
    assert sessions.admit(claims)  # still the cached word, at most max_age old
    time.sleep(0.25)
    assert not sessions.admit(claims) and sessions.admit({"sub": "7", "ver": 1})
    assert sessions.admit({"sub": "8", "ver": 0})  # nothing known of user 8: any version
    store[8] = KnownSessions(deleted=True)
    sessions.forget(8)
    assert not sessions.admit({"sub": "8", "ver": 99})
    assert not sessions.admit({"sub": "7", "ver": "1"})  # a version that is not an integer
