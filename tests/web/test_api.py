"""The JSON API: CRUD, assignment, bad input, and its OpenAPI description."""

import json
import re

import pytest

from tests.web.conftest import api_token, outbox_events, snapshot
from web.openapi import gateway_document
from web.views.api import route_document

UNKNOWN_DEVICE = "0b6d5c7e-8a4f-4c1e-9d5b-2f6a7e8b9c01"


@pytest.fixture
def admin_api(app, admin):
    return api_token(app, admin)


def call(app, method, url, headers, body=None, raw=None):
    client = app.test_client()
    if raw is not None:
        return client.open(url, method=method, headers=headers, data=raw, content_type="application/json")
    return client.open(url, method=method, headers=headers, json=body)


def test_me_returns_the_caller(app, admin, admin_api):
    response = call(app, "GET", "/api/me", admin_api)
    assert response.json["id"] == admin.id and response.json["role"] == "admin"
    assert "password_hash" not in response.json


def test_user_crud(app, admin_api):
    created = call(
        app,
        "POST",
        "/api/users",
        admin_api,
        {"email": "dan@example.test", "name": "Dan", "password": "dan password"},
    )
    assert created.status_code == 201
    user_id = created.json["id"]
    assert call(app, "GET", f"/api/users/{user_id}", admin_api).json["email"] == "dan@example.test"
    changed = call(app, "PUT", f"/api/users/{user_id}", admin_api, {"name": "Daniel"})
    assert changed.status_code == 200 and changed.json["name"] == "Daniel"
    listing = call(app, "GET", "/api/users?q=dan", admin_api).json
    assert [u["name"] for u in listing["items"]] == ["Daniel"] and listing["total"] == 1
    assert call(app, "DELETE", f"/api/users/{user_id}", admin_api).json == {
        "deleted": user_id,
        "unassigned_devices": 0,
    }
    assert call(app, "GET", f"/api/users/{user_id}", admin_api).status_code == 404
    assert [e["type"] for e in outbox_events(app)][-3:] == ["user.created", "user.updated", "user.deleted"]


def test_device_crud_and_assignment(app, admin_api, make_user):
    alice = make_user("client")
    created = call(
        app,
        "POST",
        "/api/devices",
        admin_api,
        {"name": "Heat pump", "max_hourly_kwh": 3.5, "address": "12 Elm St"},
    )
    assert created.status_code == 201
    device = created.json
    assert device["owner_id"] is None and device["max_hourly_kwh"] == 3.5
    assigned = call(app, "PUT", f"/api/devices/{device['id']}/owner", admin_api, {"user_id": alice.id})
    assert assigned.json["owner_id"] == alice.id
    listing = call(app, "GET", "/api/devices", admin_api).json
    assert [(d["id"], d["owner_id"], d["max_hourly_kwh"]) for d in listing["items"]] == [
        (device["id"], alice.id, 3.5)
    ]
    unassigned = call(app, "DELETE", f"/api/devices/{device['id']}/owner", admin_api)
    assert unassigned.json["owner_id"] is None
    changed = call(app, "PATCH", f"/api/devices/{device['id']}", admin_api, {"max_hourly_kwh": "4.25"})
    assert changed.json["max_hourly_kwh"] == 4.25
    assert call(app, "DELETE", f"/api/devices/{device['id']}", admin_api).status_code == 200
    assert call(app, "GET", f"/api/devices/{device['id']}", admin_api).status_code == 404


def test_client_lists_only_own_devices(app, make_user, make_device):
    alice, bob = make_user("client"), make_user("client")
    mine = make_device("Mine", owner_id=alice.id)
    theirs = make_device("Theirs", owner_id=bob.id)
    headers = api_token(app, alice)
    assert [d["id"] for d in call(app, "GET", "/api/devices", headers).json["items"]] == [mine]
    assert call(app, "GET", f"/api/devices/{mine}", headers).status_code == 200
    assert call(app, "GET", f"/api/devices/{theirs}", headers).status_code == 403


def test_the_simulator_lists_devices_with_the_service_token_it_mints(app, make_device, migrated):
    from unittest import mock

    from simulator.modes import fetch_devices

    device = make_device("Listed", owner_id=None)
    client = app.test_client()

    def get(url, params, timeout, headers):  # the simulator's HTTP call, served by the app itself
        answer = client.get("/api/devices", query_string=params, headers=headers)
        return mock.Mock(json=answer.get_json, raise_for_status=lambda: assert_ok(answer))

    def assert_ok(answer):
        assert answer.status_code == 200, answer.get_data(as_text=True)

    with mock.patch("simulator.modes.requests.get", get):
        assert device in [listed["id"] for listed in fetch_devices(migrated)]


BAD_DEVICES = [
    ({"name": "", "max_hourly_kwh": 1}, "name"),
    ({"name": "x" * 10_000, "max_hourly_kwh": 1}, "name"),
    ({"name": 42, "max_hourly_kwh": 1}, "name"),
    ({"name": "X", "max_hourly_kwh": -1}, "max_hourly_kwh"),
    ({"name": "X", "max_hourly_kwh": 0}, "max_hourly_kwh"),
    ({"name": "X", "max_hourly_kwh": "lots"}, "max_hourly_kwh"),
    ({"name": "X", "max_hourly_kwh": True}, "max_hourly_kwh"),
    ({"name": "X"}, "max_hourly_kwh"),
    ({"name": "X", "max_hourly_kwh": 1, "owner_id": "abc"}, "user_id"),
    ({"name": "X", "max_hourly_kwh": 1, "colour": "red"}, "colour"),  # no field but the documented ones
]


@pytest.mark.parametrize(("body", "field"), BAD_DEVICES)
def test_bad_device_gets_422_naming_the_field_and_changes_nothing(app, admin_api, make_device, body, field):
    existing = make_device("Existing")
    before = snapshot(app)
    created = call(app, "POST", "/api/devices", admin_api, body)
    assert created.status_code == 422 and field in created.json["fields"], created.json
    if field in body:  # an edit only checks the fields it sends
        edited = call(app, "PUT", f"/api/devices/{existing}", admin_api, body)
        assert edited.status_code == 422 and field in edited.json["fields"]
    assert snapshot(app) == before


def test_a_device_for_a_user_who_cannot_own_it_gets_409_and_changes_nothing(app, admin_api, admin):
    """Well-formed input that stored data refuses is a conflict, not a malformed request."""
    before = snapshot(app)
    for owner in (999999, admin.id):  # nobody, and an administrator
        body = {"name": "X", "max_hourly_kwh": 1, "owner_id": owner}
        created = call(app, "POST", "/api/devices", admin_api, body)
        assert created.status_code == 409 and "user_id" in created.json["fields"], created.json
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "email": "e@example.test", "password": "long enough"},
        {"name": "x" * 10_000, "email": "e@example.test", "password": "long enough"},
        {"name": "E", "email": "e@example.test", "password": 12345678},
        {"name": "E", "email": ["e@example.test"], "password": "long enough"},
    ],
)
def test_bad_user_gets_422_and_changes_nothing(app, admin_api, body):
    before = snapshot(app)
    response = call(app, "POST", "/api/users", admin_api, body)
    assert response.status_code == 422 and response.json["error"] == "invalid input"
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/api/users"),
        ("PUT", "/api/users/{user}"),
        ("POST", "/api/devices"),
        ("PUT", "/api/devices/{device}"),
        ("PUT", "/api/devices/{device}/owner"),
    ],
)
@pytest.mark.parametrize("raw", [b"{broken", b"[]", b"null", b"\xff\xfe"])
def test_malformed_json_gets_400_and_changes_nothing(app, admin, admin_api, make_device, method, url, raw):
    device = make_device("Existing")
    before = snapshot(app)
    response = call(app, method, url.format(user=admin.id, device=device), admin_api, raw=raw)
    assert response.status_code == 400 and "JSON object" in response.json["error"]
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/users/999999"),
        ("PUT", "/api/users/999999"),
        ("DELETE", "/api/users/999999"),
        ("GET", f"/api/devices/{UNKNOWN_DEVICE}"),
        ("PUT", f"/api/devices/{UNKNOWN_DEVICE}"),
        ("DELETE", f"/api/devices/{UNKNOWN_DEVICE}"),
        ("PUT", f"/api/devices/{UNKNOWN_DEVICE}/owner"),
        ("DELETE", f"/api/devices/{UNKNOWN_DEVICE}/owner"),
        ("GET", "/api/devices/not-a-uuid"),
    ],
)
def test_unknown_ids_get_404_json(app, admin_api, method, url):
    response = call(app, method, url, admin_api, {"name": "X", "user_id": 1})
    assert response.status_code == 404 and "error" in response.json


def test_assign_needs_a_user_id(app, admin_api, make_device):
    device = make_device("Existing")
    response = call(app, "PUT", f"/api/devices/{device}/owner", admin_api, {})
    assert response.status_code == 422 and "user_id" in response.json["fields"]


def test_last_admin_is_protected_in_the_api(app, admin, admin_api, make_user):
    other = make_user("admin")
    other_headers = api_token(app, other)
    assert call(app, "DELETE", f"/api/users/{admin.id}", admin_api).status_code == 409  # yourself
    assert call(app, "DELETE", f"/api/users/{admin.id}", other_headers).status_code == 200
    response = call(app, "PUT", f"/api/users/{other.id}", other_headers, {"role": "client"})
    assert response.status_code == 409 and "own role" in response.json["error"]


def test_cookie_auth_without_csrf_header_is_refused_for_changes(app, admin):
    from tests.web.conftest import sign_in

    browser = sign_in(app, admin)
    before = snapshot(app)
    response = browser.post("/api/devices", json={"name": "X", "max_hourly_kwh": 1})
    assert response.status_code == 401
    assert snapshot(app) == before
    with_header = browser.post(
        "/api/devices", json={"name": "X", "max_hourly_kwh": 1}, headers=browser.csrf()
    )
    assert with_header.status_code == 201


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_api_route_is_in_the_openapi_document(app):
    served = app.test_client().get("/api/openapi.json").json
    assert served == gateway_document() and served["openapi"].startswith("3.")
    document = route_document()  # the portal's own part of it (tests/test_openapi.py: the others)
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    }
    assert routes == documented
    json.dumps(document)  # serialisable as served
