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


@pytest.fixture(scope="session")
def stack_ports():
    """Return free ports for the gateway and every HTTP service of this run, as EMS_* variables."""
    from tests.processes import free_port

    names = ("GATEWAY", "WEB", "SUPPORT", "NOTIFIER", "MONITOR_API")
    return {f"EMS_{name}_PORT": str(free_port()) for name in names}


@pytest.fixture(scope="session")
def stack(migrated, stack_ports):
    """Run the whole system (every Procfile process but the simulator) for this session.

    Yields the Stack; its `url` is the gateway's address. Browser and end-to-end
    tests use it; tests of one service start only that service instead.
    """
    from tests.processes import Stack, procfile_commands

    os.environ.update(stack_ports)
    settings = load_settings()
    names = [name for name in procfile_commands() if name != "simulator"]
    running = Stack(names, env={**stack_ports, "EMS_PUBLIC_URL": settings.public_url})
    try:
        running.start([int(port) for port in stack_ports.values()])
        running.url = f"http://localhost:{stack_ports['EMS_GATEWAY_PORT']}"
        running.settings = settings
        yield running
    finally:
        running.stop()
