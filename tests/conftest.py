"""Fixtures shared by every test.

Each test run is isolated: its own database prefix on the real MariaDB and its
own virtual host on the real RabbitMQ, both removed at the end. The settings
are also exported as EMS_* variables so that processes a test starts inherit them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from urllib.parse import quote

import pytest

from common.db import drop_databases
from common.settings import load_settings
from migrations.runner import upgrade

RUN_ID = secrets.token_hex(4)


def _rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def settings():
    """Return settings isolated for this test run (database prefix, RabbitMQ vhost)."""
    vhost = f"ems-test-{RUN_ID}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    environment = {
        "EMS_ENV": "test",
        "EMS_DB_PREFIX": f"emst_{RUN_ID}_",
        "EMS_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}",
        "EMS_JWT_SECRET": "test-secret-" + secrets.token_hex(16),
        "EMS_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
    }
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        yield load_settings()
    finally:
        drop_databases(load_settings())
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def migrated(settings):
    """Create this run's databases and bring them to the newest migration."""
    upgrade(settings)
    return settings
