"""A deployment that was initialised never comes back silently empty: with
EMS_EXPECT_EXISTING_DATA the migrations (and the services' start-up check) refuse
a database without EMS's schema and create nothing; on the migrated databases they
run again as often as deployed. On the real MariaDB, with database prefixes of their own."""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys

import pytest

from common.db import (
    SERVICES_WITH_DATABASE,
    MissingDataError,
    databases_without_schema,
    drop_databases,
    refuse_if_data_missing,
    server_connection,
)
from migrations.runner import upgrade
from tests.processes import ROOT


@pytest.fixture
def fresh(settings):
    """Give a test settings naming databases that do not exist yet; drop whatever it made."""
    prefix = f"{settings.db_prefix}fresh{secrets.token_hex(3)}_"
    fresh_settings = dataclasses.replace(settings, db_prefix=prefix)
    yield fresh_settings
    drop_databases(fresh_settings)


def existing_databases(settings) -> set[str]:
    """Return which of the settings' service databases exist on the server."""
    names = [settings.database_name(service) for service in SERVICES_WITH_DATABASE]
    connection = server_connection(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name IN %s",
                           (names,))
            return {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()


def test_the_migrations_refuse_to_create_the_databases_of_an_initialised_deployment(fresh):
    expecting = dataclasses.replace(fresh, expect_existing_data=True)

    with pytest.raises(MissingDataError, match="EMS_EXPECT_EXISTING_DATA is true") as refused:
        upgrade(expecting, broker=False)

    assert all(fresh.database_name(service) in str(refused.value) for service in SERVICES_WITH_DATABASE)
    assert existing_databases(fresh) == set(), "nothing was created"


def test_an_empty_database_is_refused_like_a_missing_one(fresh):
    upgrade(fresh, services=("web", "support"), broker=False)
    connection = server_connection(fresh)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{fresh.database_name('monitor')}`")
    finally:
        connection.close()
    expecting = dataclasses.replace(fresh, expect_existing_data=True)

    assert databases_without_schema(fresh) == [fresh.database_name("monitor")]
    with pytest.raises(MissingDataError, match=fresh.database_name("monitor")):
        refuse_if_data_missing(expecting)
    refuse_if_data_missing(expecting, services=("web", "support"))  # those two hold their schema


def test_the_migrations_run_again_on_an_initialised_deployment_and_change_nothing(migrated):
    expecting = dataclasses.replace(migrated, expect_existing_data=True)

    upgrade(expecting, broker=False)
    upgrade(expecting, broker=False)

    assert databases_without_schema(expecting) == []


def test_the_migrate_command_says_why_it_refuses_and_exits_non_zero(fresh):
    environment = {**os.environ, "EMS_DB_PREFIX": fresh.db_prefix, "EMS_EXPECT_EXISTING_DATA": "true"}
    finished = subprocess.run([sys.executable, "-m", "migrations", "upgrade"], cwd=ROOT, env=environment,
                              capture_output=True, text=True, timeout=120)

    assert finished.returncode == 3
    assert "migrations refused: EMS_EXPECT_EXISTING_DATA is true" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert existing_databases(fresh) == set()


def test_every_table_has_a_primary_key_as_galera_needs(migrated):
    # Galera replicates rows by key: a table without one cannot be kept the same on every node.
    names = [migrated.database_name(service) for service in SERVICES_WITH_DATABASE]
    connection = server_connection(migrated)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT t.table_schema, t.table_name FROM information_schema.tables t "
                "LEFT JOIN information_schema.table_constraints c ON c.table_schema = t.table_schema "
                "AND c.table_name = t.table_name AND c.constraint_type = 'PRIMARY KEY' "
                "WHERE t.table_schema IN %s AND t.table_type = 'BASE TABLE' AND c.constraint_name IS NULL",
                (names,))
            without_key = cursor.fetchall()
    finally:
        connection.close()
    assert without_key == ()
