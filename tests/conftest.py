"""Fixtures shared by every test.

Each test run is isolated: its own database prefix on the real MariaDB and its
own virtual host on the real RabbitMQ, both removed at the end. The settings
are also exported as EMS_* variables so that processes a test starts inherit
them. The whole-system `stack` gets an isolation of its own, so that its
consumers never take messages that other tests publish and expect to read.
"""

from __future__ import annotations

import secrets

import pytest
from hypothesis import settings as hypothesis_settings

from common.settings import load_settings
from migrations.runner import upgrade
from tests.isolation import environment, isolated

RUN_ID = secrets.token_hex(4)

# Property tests are the same on every run: a fixed seed plus their explicit @example
# poison inputs, no example database on disk, no deadline a loaded machine could miss.
hypothesis_settings.register_profile("ems", derandomize=True, deadline=None, database=None,
                                     max_examples=500)
hypothesis_settings.load_profile("ems")


@pytest.fixture(scope="session")
def settings():
    """Return settings isolated for this test run (database prefix, RabbitMQ vhost)."""
    common = {
        "EMS_ENV": "test",
        "EMS_JWT_SECRET": "test-secret-" + secrets.token_hex(16),
        "EMS_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
    }
    with isolated(RUN_ID, common) as variables, environment(variables):
        yield load_settings()


@pytest.fixture(scope="session")
def migrated(settings):
    """Create this run's databases and bring them to the newest migration."""
    upgrade(settings)
    return settings


@pytest.fixture(scope="session")
def stack_ports():
    """Return free ports for the gateway and every HTTP service of the stack, as EMS_* variables."""
    from tests.processes import free_port

    names = ("GATEWAY", "WEB", "SUPPORT", "NOTIFIER", "MONITOR_API")
    return {f"EMS_{name}_PORT": str(free_port()) for name in names}


@pytest.fixture(scope="session")
def stack(settings, stack_ports):
    """Run the whole system (every Procfile process but the simulator) for this session.

    Yields the Stack: `url` is the gateway's address, `settings` and `env` the
    stack's own (its database prefix and vhost differ from the `settings` fixture's).
    Browser and end-to-end tests use it; tests of one service start only that service.
    """
    from tests.processes import Stack, procfile_commands

    with isolated(f"{RUN_ID}-stack", stack_ports) as variables:
        # Only long enough to read the stack's settings: other tests keep the run's own.
        with environment(variables):
            stack_settings = load_settings()
        upgrade(stack_settings)
        names = [name for name in procfile_commands() if name != "simulator"]
        # Early warnings from the hour's first seconds (the rule's 10 minutes would make a
        # warning test wait for the clock): tests/browser/test_warnings.py.
        quick_warnings = {"EMS_WARNING_MIN_MINUTES": "0"}
        running = Stack(names, env={**variables, **quick_warnings,
                                    "EMS_PUBLIC_URL": stack_settings.public_url})
        try:
            running.start([int(port) for port in stack_ports.values()])
            running.url = f"http://localhost:{stack_ports['EMS_GATEWAY_PORT']}"
            running.settings = stack_settings
            running.env = variables
            yield running
        finally:
            running.stop()
