"""The notifier's plain functions: identity, origins, messages, presence bookkeeping."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta

import pytest

from common.auth import Identity, mint_access_token
from common.settings import load_settings
from notifier.alerts import alert_event, alert_rooms, stomp_credentials
from notifier.app import allowed_origin
from notifier.chat import MAX_PAYLOAD_BYTES, InvalidChatPayload, chat_message
from notifier.events import socket_identity
from notifier.presence import Connections, EventBudget, presence_message
from tests.notifier.conftest import make_alert

SETTINGS = load_settings(jwt_secret="unit-test-secret-of-a-decent-length-0123",  # noqa: S106
                         public_url="https://ems.example")
CLIENT = Identity(7, "client", "Ana")
ADMIN = Identity(1, "admin", "Root")
LATER = time.time() + 3600


def test_the_auth_token_wins_over_the_cookie():
    token = mint_access_token(SETTINGS, CLIENT)
    cookie = mint_access_token(SETTINGS, ADMIN)

    assert socket_identity({"token": token}, cookie, SETTINGS)[0] == CLIENT


def test_the_cookie_is_used_without_an_auth_token():
    assert socket_identity(None, mint_access_token(SETTINGS, ADMIN), SETTINGS)[0] == ADMIN


def test_a_socket_identity_carries_the_expiry_of_its_token():
    token = mint_access_token(SETTINGS, CLIENT, timedelta(minutes=5))

    _, expires_at = socket_identity({"token": token}, None, SETTINGS)

    assert abs(expires_at - (time.time() + 300)) < 5


@pytest.mark.parametrize("auth, cookie", [
    (None, None),
    ({"token": 42}, None),
    ("a string", None),
    ({"token": "not.a.jwt"}, None),
    (None, mint_access_token(dataclasses.replace(SETTINGS, jwt_secret="x" * 40), CLIENT)),
    (None, mint_access_token(SETTINGS, CLIENT, timedelta(seconds=-1))),
])
def test_no_identity_without_a_valid_token(auth, cookie):
    assert socket_identity(auth, cookie, SETTINGS) is None


def test_only_the_gateway_and_the_same_origin_may_open_sockets():
    check = allowed_origin(SETTINGS)
    environ = {"HTTP_HOST": "notifier:5002", "wsgi.url_scheme": "http"}

    assert check("https://ems.example", environ)
    assert check("http://notifier:5002", environ)
    assert check(None, environ)
    assert not check("https://evil.example", environ)
    assert not check("https://ems.example.evil.example", environ)


def test_a_chat_message_carries_the_verified_sender_and_the_payload():
    body = chat_message(CLIENT, {"body": "ça chauffe"}, "2026-11-26T17:00:00.000+00:00")

    assert json.loads(body) == {"sender": {"id": 7, "role": "client", "name": "Ana"},
                                "payload": {"body": "ça chauffe"},
                                "received_at": "2026-11-26T17:00:00.000+00:00"}


@pytest.mark.parametrize("payload", [None, [], "text", 3, {"body": "x" * MAX_PAYLOAD_BYTES}])
def test_a_chat_payload_must_be_a_small_object(payload):
    with pytest.raises(InvalidChatPayload):
        chat_message(CLIENT, payload, "2026-11-26T17:00:00+00:00")


def test_the_admin_set_changes_only_with_the_first_and_last_socket_of_an_admin():
    connections = Connections()

    assert connections.add("a", ADMIN, LATER) is True
    assert connections.add("b", ADMIN, LATER) is False
    assert connections.add("c", CLIENT, LATER) is False
    assert connections.remove("a") is False
    assert connections.admin_ids() == [1]
    assert connections.remove("b") is True
    assert connections.remove("b") is False
    assert connections.admin_ids() == []
    assert len(connections) == 1


def test_a_socket_has_no_identity_once_its_token_expired():
    connections = Connections()
    connections.add("a", CLIENT, expires_at=1000.0)
    connections.add("b", ADMIN, expires_at=2000.0)

    assert connections.user("a", now=999.0).identity == CLIENT
    assert connections.user("a", now=1000.0) is None
    assert connections.expired(now=1500.0) == ["a"]


def test_an_event_budget_allows_a_burst_then_a_steady_rate():
    budget = EventBudget(burst=3, per_second=2.0, now=0.0)

    assert [budget.spend(0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.spend(0.5) is True
    assert budget.spend(0.5) is False
    assert [budget.spend(100.0) for _ in range(4)] == [True, True, True, False]


def test_presence_lists_admin_ids_in_order():
    assert json.loads(presence_message("n-1", [5, 2], "2026-11-26T17:00:00+00:00")) == {
        "instance": "n-1", "admin_ids": [2, 5], "at": "2026-11-26T17:00:00+00:00"}


def test_an_alert_goes_to_its_owner_and_the_admins_with_the_device_page():
    alert = make_alert(7, device_id="0b6d5c7e-7f3a-4c55-9a63-3a1d6c2b8e11")

    assert alert_rooms(alert) == ["user:7", "admins"]
    assert alert_event(alert)["url"] == "/monitor/devices/0b6d5c7e-7f3a-4c55-9a63-3a1d6c2b8e11"
    assert alert_event(alert)["kwh"] == alert.kwh


@pytest.mark.parametrize("url, expected", [
    ("amqp://guest:guest@127.0.0.1:5672/%2F", ("guest", "guest", "/")),
    ("amqp://guest:guest@127.0.0.1:5672/", ("guest", "guest", "/")),
    ("amqp://ems:p%40ss@rabbit:5672/ems-test-1", ("ems", "p@ss", "ems-test-1")),
])
def test_stomp_uses_the_credentials_and_virtual_host_of_the_amqp_url(url, expected):
    assert stomp_credentials(url) == expected
