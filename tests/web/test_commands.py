"""The portal's commands: seed, demo-logins, demo-devices and create-admin."""

import os
import subprocess

from sqlalchemy import text

from tests.processes import ROOT, python_module
from web.demo import DEMO_ACCOUNTS, DEMO_DEVICES
from web.extensions import db


def run(*arguments: str) -> str:
    result = subprocess.run(
        python_module("web", *arguments), cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout


def test_seed_creates_the_demo_data_once_with_its_events(app):
    first = run("seed")
    second = run("seed")
    assert f"{len(DEMO_ACCOUNTS)} users and {len(DEMO_DEVICES)} devices created" in first
    assert "0 users and 0 devices created" in second
    with app.app_context():
        users = dict(db.session.execute(text("SELECT email, role FROM users")).all())
        devices = db.session.execute(text("SELECT id, max_hourly_kwh, owner_id FROM devices")).all()
        event_types = db.session.execute(text("SELECT routing_key FROM outbox")).scalars().all()
    assert users == {account.email: account.role for account in DEMO_ACCOUNTS}
    assert sorted(device.id for device in devices) == sorted(spec.id for spec in DEMO_DEVICES)
    assert all(device.owner_id is not None for device in devices)
    assert min(float(device.max_hourly_kwh) for device in devices) <= 0.5  # the one the demo pushes over
    assert sorted(event_types) == sorted(["user.created"] * 3 + ["device.created"] * 5)


def test_demo_logins_work_and_are_printed(app):
    run("seed")
    printed = run("demo-logins")
    for account in DEMO_ACCOUNTS:
        assert account.email in printed and account.password in printed
        response = app.test_client().post(
            "/login", data={"email": account.email, "password": account.password}
        )
        assert response.status_code == 303


def test_create_admin_makes_a_working_administrator_from_the_environment_password(app):
    email = "ops-admin@example.test"
    result = subprocess.run(
        python_module("web", "create-admin", "--email", email, "--name", "Operations"), cwd=ROOT,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "EMS_ADMIN_PASSWORD": "a-long-production-password"},
    )
    assert result.returncode == 0, result.stderr
    assert "a-long-production-password" not in result.stdout
    response = app.test_client().post("/login", data={"email": email,
                                                      "password": "a-long-production-password"})
    assert response.status_code == 303
    with app.app_context():
        role = db.session.execute(text("SELECT role FROM users WHERE email = :e"), {"e": email}).scalar()
    assert role == "admin"


def test_create_admin_refuses_bad_input_with_the_reason():
    result = subprocess.run(
        python_module("web", "create-admin", "--email", "not-an-email", "--name", "X"), cwd=ROOT,
        capture_output=True, text=True, timeout=120, env={**os.environ, "EMS_ADMIN_PASSWORD": "x"},
    )
    assert result.returncode == 2
    assert "email" in result.stderr


def test_demo_devices_prints_the_seeded_device_ids_for_the_backfill():
    assert run("demo-devices").split() == [f"{device.id}={device.max_hourly_kwh}" for device in DEMO_DEVICES]
