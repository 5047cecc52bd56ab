"""Fixtures of the portal's tests: the app on this run's database, clean tables,
users, and test clients signed in as somebody."""

# ruff: noqa: S105, S106, S608 - test credentials and fixed table names
from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import text

from common.auth import CSRF_HEADER
from web import create_app
from web.accounts import create_user
from web.extensions import db
from web.inventory import create_device

PASSWORD = "correct horse battery"
TABLES = ("outbox", "login_attempts", "refresh_tokens", "devices", "users", "portal_settings")


@pytest.fixture(scope="session")
def app(migrated):
    """Return the portal on this run's migrated database."""
    app = create_app(migrated)
    app.config["TESTING"] = True
    return app


@pytest.fixture(autouse=True)
def clean_tables(request):
    """Start every portal test from empty tables (only for tests that use the database)."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    with app.app_context():
        for table in TABLES:
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
    yield


@dataclass
class Person:
    id: int
    email: str
    name: str
    role: str
    password: str = PASSWORD


@pytest.fixture
def make_user(app):
    """Create a user through the domain function (with its event) and return who it is."""
    counter = iter(range(1, 10_000))

    def make(role: str = "client", name: str | None = None, email: str | None = None) -> Person:
        number = next(counter)
        name = name or f"{role.title()} {number}"
        email = email or f"{role}{number}@example.test"
        with app.app_context():
            user = create_user(
                {"email": email, "name": name, "role": role, "password": PASSWORD},
                app.extensions["ems_password_hasher"],
            )
            return Person(user.id, user.email, user.name, user.role)

    return make


@pytest.fixture
def make_device(app):
    """Create a device (optionally owned) and return its id."""

    def make(
        name: str = "Meter", owner_id: int | None = None, limit: str = "2.5", address: str = "1 Test Road"
    ) -> str:
        with app.app_context():
            device = create_device(
                {"name": name, "max_hourly_kwh": limit, "address": address, "owner_id": owner_id}
            )
            return device.id

    return make


class Browser:
    """A Flask test client signed in through the login form, sending the CSRF header like ems.js."""

    def __init__(self, client):
        self.client = client

    def csrf(self) -> dict:
        cookie = self.client.get_cookie("csrf_access_token")
        return {CSRF_HEADER: cookie.value} if cookie else {}

    def htmx(self, method: str, url: str, **kwargs):
        headers = {"HX-Request": "true", **self.csrf(), **kwargs.pop("headers", {})}
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def sign_in(app, person: Person) -> Browser:
    """Return a browser signed in as `person`."""
    client = app.test_client()
    response = client.post("/login", data={"email": person.email, "password": person.password})
    assert response.status_code == 303, response.data
    return Browser(client)


@pytest.fixture
def admin(app, make_user):
    return make_user("admin", name="Root Admin")


@pytest.fixture
def admin_browser(app, admin) -> Browser:
    return sign_in(app, admin)


def api_token(app, person: Person) -> dict:
    """Return the Authorization header of `person` from the API's login."""
    response = app.test_client().post(
        "/api/auth/login", json={"email": person.email, "password": person.password}
    )
    assert response.status_code == 200, response.json
    return {"Authorization": "Bearer " + response.json["access_token"]}


# What a change writes; the outbox's published_at is the relay's bookkeeping (a relay
# of the whole-stack fixture may be running), so it is left out.
SNAPSHOT_QUERIES = {
    "users": "SELECT * FROM users ORDER BY id",
    "devices": "SELECT * FROM devices ORDER BY id",
    "outbox": "SELECT id, routing_key, body FROM outbox ORDER BY id",
    "portal_settings": "SELECT * FROM portal_settings ORDER BY name",
}


def snapshot(app) -> dict:
    """Return every row of the portal's data tables (to prove that nothing changed)."""
    with app.app_context():
        return {table: [tuple(row) for row in db.session.execute(text(query))]
                for table, query in SNAPSHOT_QUERIES.items()}


def outbox_events(app) -> list[dict]:
    """Return the bodies of every outbox row, in sequence order."""
    import json

    with app.app_context():
        rows = db.session.execute(text("SELECT body FROM outbox ORDER BY id")).scalars()
        return [json.loads(body) if isinstance(body, str) else body for body in rows]
