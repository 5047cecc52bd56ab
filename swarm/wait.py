"""Wait until what a service needs is ready, then return (swarm/entrypoint.sh).

Swarm starts every service at once and has no `depends_on`: each task waits here
for the database, the broker and the migration job's result, as named in
EMS_WAIT_FOR ("db", "broker", "migrations", comma-separated), for at most
EMS_WAIT_SECONDS (default 300). Past that it exits non-zero and Swarm's restart
policy tries again later.
"""

from __future__ import annotations

import logging
import os
import sys
import time

sys.path.insert(0, "/app")

from common.logs import configure_logging, log_event  # noqa: E402
from common.settings import load_settings  # noqa: E402

logger = logging.getLogger("swarm.wait")
CHECK_INTERVAL_SECONDS = 2.0


def database_ready(settings) -> None:
    """Raise unless the database server accepts our credentials."""
    import pymysql

    pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                    password=settings.db_password, connect_timeout=5).close()


def broker_ready(settings) -> None:
    """Raise unless RabbitMQ accepts an AMQP connection with our URL."""
    import pika

    parameters = pika.URLParameters(settings.amqp_url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    pika.BlockingConnection(parameters).close()


def migrations_done(settings) -> None:
    """Raise unless every service database is at its newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from common.db import SERVICES_WITH_DATABASE
    from migrations.runner import alembic_config

    for service in SERVICES_WITH_DATABASE:
        heads = set(ScriptDirectory.from_config(alembic_config(settings, service)).get_heads())
        engine = create_engine(settings.database_url(service))
        try:
            with engine.connect() as connection:
                current = set(MigrationContext.configure(connection).get_current_heads())
        finally:
            engine.dispose()
        if current != heads:
            raise RuntimeError(f"{settings.database_name(service)} is at {sorted(current)}, "
                               f"not yet at {sorted(heads)}")


CHECKS = {"db": database_ready, "broker": broker_ready, "migrations": migrations_done}


def wait_for(names: list[str], timeout: float) -> bool:
    """Run each named check until it passes; return False when time runs out."""
    settings = load_settings()
    if len(settings.amqp_passwords) == 1:
        # A service's task holds only its own broker password (swarm/stack.yml) and no
        # administrator's: it waits as its service's user, which the migrate job creates.
        settings = load_settings(service=next(iter(settings.amqp_passwords)))
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            try:
                CHECKS[name](settings)
                log_event(logger, "wait.ready", dependency=name)
                break
            except Exception as error:  # noqa: BLE001 - any failure means "not yet"
                if time.monotonic() > deadline:
                    log_event(logger, "wait.gave_up", level=logging.ERROR, dependency=name,
                              error=str(error))
                    return False
                log_event(logger, "wait.not_ready", dependency=name, error=str(error)[:200])
                time.sleep(CHECK_INTERVAL_SECONDS)
    return True


def main() -> int:
    """Wait for EMS_WAIT_FOR and return the process exit status."""
    names = [name.strip() for name in os.environ.get("EMS_WAIT_FOR", "").split(",") if name.strip()]
    unknown = set(names) - set(CHECKS)
    if unknown:
        print(f"EMS_WAIT_FOR: unknown dependencies {sorted(unknown)}; known: {sorted(CHECKS)}",
              file=sys.stderr)
        return 2
    configure_logging("wait", os.environ.get("EMS_LOG_LEVEL", "INFO"))
    # Failed attempts are expected while waiting; the loop reports them in one line each.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return 0 if wait_for(names, float(os.environ.get("EMS_WAIT_SECONDS", "300"))) else 1


if __name__ == "__main__":
    sys.exit(main())
