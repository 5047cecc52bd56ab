"""Database helpers shared by the services that own a MariaDB database."""

from __future__ import annotations

import pymysql

from common.settings import Settings

SERVICES_WITH_DATABASE = ("web", "support", "monitor")


def create_databases(settings: Settings, services=SERVICES_WITH_DATABASE) -> None:
    """Create each service's database if it does not exist yet (utf8mb4)."""
    connection = pymysql.connect(host=settings.db_host, port=settings.db_port,
                                 user=settings.db_user, password=settings.db_password)
    try:
        with connection.cursor() as cursor:
            for service in services:
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{settings.database_name(service)}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
    finally:
        connection.close()


def drop_databases(settings: Settings, services=SERVICES_WITH_DATABASE) -> None:
    """Drop each service's database (tests clean up their own prefix with this)."""
    connection = pymysql.connect(host=settings.db_host, port=settings.db_port,
                                 user=settings.db_user, password=settings.db_password)
    try:
        with connection.cursor() as cursor:
            for service in services:
                cursor.execute(f"DROP DATABASE IF EXISTS `{settings.database_name(service)}`")
    finally:
        connection.close()


def engine_options() -> dict:
    """Return SQLAlchemy engine options that survive database restarts."""
    return {"pool_pre_ping": True, "pool_recycle": 1800}
