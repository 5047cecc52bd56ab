"""Limits that hold: an address cannot spread its guesses over many accounts, cannot
sign up without end, and cannot choose its own address in a header."""

# ruff: noqa: S105, S106 - test credentials
from __future__ import annotations

import pytest

from common.settings import load_settings
from tests.web.conftest import PASSWORD
from web import create_app

GATEWAY_SAW = "203.0.113.5"


def portal(**settings):
    app = create_app(load_settings(**settings))
    app.config["TESTING"] = True
    return app


def fail_login(client, email: str, forwarded_for: str | None = None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/login", data={"email": email, "password": "not the password"}, headers=headers)


def test_one_address_cannot_try_a_password_on_every_account(app, make_user):
    strict = portal(login_attempts_per_minute=3, login_attempts_per_address_per_minute=5)
    client = strict.test_client()
    for number in range(5):  # one guess on each of five accounts: under the per-account limit
        assert fail_login(client, f"target{number}@example.test").status_code == 401
    alice = make_user("client")

    limited = client.post("/login", data={"email": alice.email, "password": PASSWORD})
    assert limited.status_code == 429
    assert b"Too many login attempts" in limited.data
    api = client.post("/api/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert api.status_code == 429
    # Another address is not punished for this one.
    other = client.post("/login", data={"email": alice.email, "password": PASSWORD},
                        headers={"X-Forwarded-For": "198.51.100.7"})
    assert other.status_code == 303


def test_sign_up_is_limited_per_address(app):
    strict = portal(signups_per_address_per_hour=2)
    client = strict.test_client()

    def sign_up(number: int, forwarded_for: str = GATEWAY_SAW):
        return client.post("/signup", headers={"X-Forwarded-For": forwarded_for}, data={
            "name": f"New {number}", "email": f"new{number}@example.test",
            "password": PASSWORD, "password_confirm": PASSWORD})

    assert sign_up(1).status_code == 303
    assert sign_up(2).status_code == 303
    limited = sign_up(3)
    assert limited.status_code == 429
    assert b"Too many sign-ups" in limited.data
    assert limited.headers["Retry-After"] == "3600"
    assert sign_up(4, forwarded_for="198.51.100.7").status_code == 303


def test_behind_the_gateway_only_the_address_it_appended_counts(app):
    # A client sends its own X-Forwarded-For; the gateway appends the address it saw.
    strict = portal(login_attempts_per_minute=100, login_attempts_per_address_per_minute=3,
                    trusted_proxy_hops=1)
    client = strict.test_client()
    for number in range(3):
        chosen = f"10.0.0.{number}, {GATEWAY_SAW}"
        assert fail_login(client, f"t{number}@example.test", forwarded_for=chosen).status_code == 401
    assert fail_login(client, "t9@example.test", forwarded_for=f"10.9.9.9, {GATEWAY_SAW}").status_code == 429


def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(app):
    strict = portal(login_attempts_per_minute=100, login_attempts_per_address_per_minute=3,
                    trusted_proxy_hops=0)
    client = strict.test_client()
    for number in range(3):
        response = fail_login(client, f"t{number}@example.test", forwarded_for=f"10.0.0.{number}")
        assert response.status_code == 401
    assert fail_login(client, "t9@example.test", forwarded_for="10.9.9.9").status_code == 429


@pytest.mark.parametrize("hops, expected", [(0, "127.0.0.1"), (1, GATEWAY_SAW)])
def test_the_client_address_follows_the_trusted_proxy_setting(app, hops, expected):
    from web.sessions import client_address

    strict = portal(trusted_proxy_hops=hops)
    seen = {}

    @strict.get("/__address")
    def address():
        seen["address"] = client_address()
        return ""

    strict.test_client().get("/__address", headers={"X-Forwarded-For": f"6.6.6.6, {GATEWAY_SAW}"})
    assert seen["address"] == expected
