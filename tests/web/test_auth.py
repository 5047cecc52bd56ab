"""Signing in and out, sign-up, tokens and who may open what."""

# ruff: noqa: S105, S106, S608 - test credentials and fixed table names
from datetime import timedelta

import pytest
from flask_jwt_extended import decode_token

from common.auth import Identity, mint_access_token
from common.settings import load_settings
from tests.web.conftest import PASSWORD, sign_in
from web import create_app
from web.views.auth import SESSION_ENDED

NINA_SIGNUP = {"name": "Nina", "email": "nina@example.test", "password": "a long password",
               "password_confirm": "a long password"}

def test_anonymous_visitor_is_sent_to_login_with_the_page_to_come_back_to(app):
    response = app.test_client().get("/admin/devices?q=pump")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin/devices?q%3Dpump"


def test_anonymous_htmx_request_gets_401_with_a_redirect_header(app):
    response = app.test_client().get("/admin/users", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_anonymous_api_call_gets_401_json(app):
    response = app.test_client().get("/api/me")
    assert response.status_code == 401
    assert response.json == {"error": "authentication required"}


def test_login_sets_httponly_lax_cookies_and_goes_to_next(app, make_user):
    alice = make_user("client")
    response = app.test_client().post(
        "/login", data={"email": alice.email, "password": PASSWORD, "next": "/devices"}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/devices"
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    assert "HttpOnly" in cookies["access_token_cookie"] and "SameSite=Lax" in cookies["access_token_cookie"]
    assert "HttpOnly" in cookies["refresh_token_cookie"]
    assert "Path=/auth/refresh" in cookies["refresh_token_cookie"]
    assert "HttpOnly" not in cookies["csrf_access_token"]  # ems.js must read it


def test_login_refuses_to_redirect_off_site(app, make_user):
    alice = make_user("client")
    response = app.test_client().post(
        "/login", data={"email": alice.email, "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response.headers["Location"] == "/"


def test_admin_lands_on_the_device_list(app, admin):
    response = app.test_client().post("/login", data={"email": admin.email, "password": PASSWORD})
    assert response.headers["Location"] == "/admin/devices"


def test_wrong_password_and_unknown_email_get_the_same_answer(app, make_user):
    alice = make_user("client")
    client = app.test_client()
    wrong = client.post("/login", data={"email": alice.email, "password": "nope nope"})
    unknown = client.post("/login", data={"email": "ghost@example.test", "password": "nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert b"Wrong e-mail or password." in wrong.data and b"Wrong e-mail or password." in unknown.data
    assert client.get_cookie("access_token_cookie") is None


def test_passwords_are_stored_as_argon2id_hashes(app, make_user):
    from web.extensions import db
    from web.models import User

    alice = make_user("client")
    with app.app_context():
        stored = db.session.get(User, alice.id).password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.fixture
def strict_app(migrated):
    """The portal with only 3 login attempts per minute."""
    app = create_app(load_settings(login_attempts_per_minute=3))
    app.config["TESTING"] = True
    return app


def test_login_attempts_are_limited_per_email_and_address(app, strict_app, make_user):
    alice = make_user("client")
    client = strict_app.test_client()
    for _ in range(3):
        assert client.post("/login", data={"email": alice.email, "password": "wrong one"}).status_code == 401
    limited = client.post("/login", data={"email": alice.email, "password": PASSWORD})
    assert limited.status_code == 429
    assert b"Too many login attempts. Wait a minute and try again." in limited.data
    assert limited.headers["Retry-After"] == "60"
    api = client.post("/api/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert api.status_code == 429 and "Too many login attempts" in api.json["error"]
    # Another address (behind the gateway, from X-Forwarded-For) still may try.
    other = client.post(
        "/login",
        data={"email": alice.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert other.status_code == 303


def test_rate_limit_is_shared_by_every_worker(app, strict_app, make_user):
    # Two app instances stand for two gunicorn workers: the count lives in the database.
    alice = make_user("client")
    second_worker = create_app(load_settings(login_attempts_per_minute=3))
    for worker in (strict_app, second_worker, strict_app):
        worker.test_client().post("/login", data={"email": alice.email, "password": "wrong one"})
    response = second_worker.test_client().post("/login", data={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 429


def test_logout_removes_the_cookies(app, make_user):
    browser = sign_in(app, make_user("client"))
    response = browser.htmx("POST", "/logout")
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/login"
    assert browser.get_cookie("access_token_cookie") is None
    assert browser.get("/devices").status_code == 302


def test_refresh_cookie_issues_a_new_access_token_with_current_role(app, make_user):
    browser = sign_in(app, make_user("client"))
    refresh_csrf = browser.get_cookie("csrf_refresh_token").value
    without_csrf = browser.post("/auth/refresh")
    assert without_csrf.status_code == 401
    response = browser.post("/auth/refresh", headers={"X-CSRF-TOKEN": refresh_csrf})
    assert response.status_code == 200
    assert any(c.startswith("access_token_cookie=") for c in response.headers.getlist("Set-Cookie"))


def test_access_token_close_to_expiry_is_replaced_silently(app, make_user):
    alice = make_user("client")
    client = app.test_client()
    with app.app_context():
        old = mint_access_token(
            app.config["EMS_SETTINGS"], Identity(alice.id, "client", alice.name), timedelta(minutes=2)
        )  # less than half of the 15 minutes left
    client.set_cookie("access_token_cookie", old)
    response = client.get("/devices")
    assert response.status_code == 200
    new = client.get_cookie("access_token_cookie").value
    assert new != old
    with app.app_context():
        claims = decode_token(new)
    assert claims["exp"] - claims["iat"] == 15 * 60 and claims["sub"] == str(alice.id)


def test_fresh_access_token_is_not_replaced(app, make_user):
    browser = sign_in(app, make_user("client"))
    response = browser.get("/devices")
    assert not any(c.startswith("access_token_cookie=") for c in response.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("kind", ["forged", "expired", "garbage", "refresh-as-access"])
def test_bad_tokens_are_refused_on_pages_and_api(app, make_user, kind):
    alice = make_user("client")
    identity = Identity(alice.id, "admin", alice.name)  # a forger would also claim admin
    settings = app.config["EMS_SETTINGS"]
    if kind == "forged":
        token = mint_access_token(load_settings(jwt_secret="an-attacker-secret-of-enough-length"), identity)
    elif kind == "expired":
        token = mint_access_token(settings, Identity(alice.id, "client", alice.name), timedelta(seconds=-30))
    elif kind == "garbage":
        token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIiwicm9sZSI6ImFkbWluIn0."
    else:
        client = sign_in(app, alice)
        token = client.get_cookie("refresh_token_cookie", path="/auth/refresh").value
    api = app.test_client().get("/api/users", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401 and "error" in api.json
    page_client = app.test_client()
    page_client.set_cookie("access_token_cookie", token)
    page = page_client.get("/admin/users")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")


def test_client_opening_an_admin_page_gets_the_403_page(app, make_user):
    browser = sign_in(app, make_user("client"))
    response = browser.get("/admin/users")
    assert response.status_code == 403
    assert b"You do not have access to this page." in response.data


def test_client_calling_an_admin_api_gets_403_json(app, make_user):
    browser = sign_in(app, make_user("client"))
    response = browser.get("/api/users")
    assert response.status_code == 403 and response.json == {"error": "forbidden"}


def test_signup_creates_a_client_and_signs_in(app):
    client = app.test_client()
    response = client.post(
        "/signup",
        data=NINA_SIGNUP,
    )
    assert response.status_code == 303
    me = client.get("/api/me")
    assert me.json["role"] == "client" and me.json["email"] == "nina@example.test"


def test_signup_errors_are_shown_on_the_form(app):
    response = app.test_client().post(
        "/signup",
        data={**NINA_SIGNUP, "name": "", "password_confirm": "other"},
    )
    assert response.status_code == 422
    assert b"the passwords do not match" in response.data


def test_admin_can_close_signup(app, admin_browser):
    response = admin_browser.htmx("PUT", "/admin/settings/signup", data={"enabled": "false"})
    assert response.status_code == 200 and b"closed" in response.data
    anonymous = app.test_client()
    assert anonymous.get("/signup").status_code == 403
    refused = anonymous.post(
        "/signup",
        data=NINA_SIGNUP,
    )
    assert refused.status_code == 403
    assert (
        anonymous.post(
            "/api/auth/login", json={"email": "nina@example.test", "password": "a long password"}
        ).status_code
        == 401
    )
    admin_browser.htmx("PUT", "/admin/settings/signup", data={"enabled": "true"})
    assert anonymous.get("/signup").status_code == 200


def test_api_login_returns_a_bearer_token(app, make_user):
    alice = make_user("client")
    response = app.test_client().post("/api/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 200
    me = app.test_client().get(
        "/api/me", headers={"Authorization": "Bearer " + response.json["access_token"]}
    )
    assert me.json["id"] == alice.id


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'"text"'])
def test_api_login_with_malformed_json_gets_400(app, body):
    response = app.test_client().post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.json["error"]


def test_login_and_signup_posted_from_another_site_are_refused(app, make_user):
    alice = make_user("client")
    client = app.test_client()
    foreign = {"Origin": "https://evil.example"}
    login = client.post("/login", data={"email": alice.email, "password": PASSWORD}, headers=foreign)
    assert login.status_code == 403 and client.get_cookie("access_token_cookie") is None
    signup = client.post(
        "/signup",
        data={
            "name": "N",
            "email": "n@example.test",
            "password": "long enough",
            "password_confirm": "long enough",
        },
        headers=foreign,
    )
    assert signup.status_code == 403
    same_site = client.post(
        "/login", data={"email": alice.email, "password": PASSWORD}, headers={"Origin": "http://localhost"}
    )
    assert same_site.status_code == 303


def test_refresh_is_refused_once_the_user_is_deleted(app, admin_browser, make_user):
    alice = make_user("client")
    browser = sign_in(app, alice)
    assert admin_browser.htmx("DELETE", f"/admin/users/{alice.id}").status_code == 200
    response = browser.post(
        "/auth/refresh", headers={"X-CSRF-TOKEN": browser.get_cookie("csrf_refresh_token").value}
    )
    assert response.status_code == 401 and response.json["error"] == SESSION_ENDED
    assert browser.get_cookie("refresh_token_cookie", path="/auth/refresh") is None
