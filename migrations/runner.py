"""Create the service databases and bring each one to its newest migration."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from common.db import SERVICES_WITH_DATABASE, create_databases, refuse_if_data_missing
from common.logs import log_event
from common.settings import Settings
from migrations.broker import upgrade_broker

logger = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(settings: Settings, service: str) -> Config:
    """Return the Alembic configuration of one service's migration history."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR / service))
    # ConfigParser treats % as interpolation; a password may contain one.
    config.set_main_option("sqlalchemy.url", settings.database_url(service).replace("%", "%%"))
    return config


def upgrade(settings: Settings, services=SERVICES_WITH_DATABASE, broker: bool = True) -> None:
    """Create the databases if needed and upgrade each one to `head`; then the broker's queues.

    Safe to run on every deployment. With EMS_EXPECT_EXISTING_DATA it creates nothing:
    a database without its schema stops it with MissingDataError before any change.
    """
    refuse_if_data_missing(settings, services)
    create_databases(settings, services)
    for service in services:
        command.upgrade(alembic_config(settings, service), "head")
        log_event(logger, "migrations.upgraded", database=settings.database_name(service))
    if broker:
        upgrade_broker(settings)
        log_event(logger, "migrations.broker_upgraded")
