"""Isolation on the shared MariaDB and RabbitMQ: a virtual host and a database
prefix of one's own, removed afterwards. Used by the test fixtures and the
benchmarks, so that they never meet `make run` or each other."""

from __future__ import annotations

import os
import secrets
import subprocess
from contextlib import contextmanager
from urllib.parse import quote

from common.db import drop_databases
from common.settings import load_settings


def rabbitmqctl(*arguments: str) -> None:
    """Run one rabbitmqctl command quietly; raise if it fails."""
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=60)


@contextmanager
def own_vhost(label: str):
    """Yield the AMQP URL of a fresh virtual host `ems-test-<label>`; delete it afterwards."""
    vhost = f"ems-test-{label}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"
    finally:
        try:
            rabbitmqctl("delete_vhost", vhost)
        except subprocess.CalledProcessError:
            # Never hide the caller's own error behind the clean-up's.
            print(f"could not delete virtual host {vhost}; remove it with rabbitmqctl")


@contextmanager
def environment(variables: dict):
    """Set EMS_* variables for the duration of the block, then restore the old values."""
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def isolated(label: str | None = None, extra: dict | None = None):
    """Yield EMS_* variables naming a fresh database prefix and RabbitMQ vhost; remove both after."""
    label = label or secrets.token_hex(4)
    with own_vhost(label) as amqp_url:
        variables = {
            "EMS_DB_PREFIX": f"emst_{label.replace('-', '_')}_",
            "EMS_AMQP_URL": amqp_url,
            # Every process connects as the vhost's administrator and declares the topology
            # itself; tests of the service users create their own (tests/test_broker_users.py).
            "EMS_AMQP_SERVICE_USERS": "false",
            **(extra or {}),
        }
        try:
            yield variables
        finally:
            with environment(variables):
                drop_databases(load_settings())
