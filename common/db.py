"""Database helpers shared by the services that own a MariaDB database."""

from __future__ import annotations

from datetime import UTC, datetime

import pymysql

from common.settings import Settings

SERVICES_WITH_DATABASE = ("web", "support", "monitor")
# Alembic's table: a database without it never had EMS's schema.
SCHEMA_MARKER_TABLE = "alembic_version"


class MissingDataError(RuntimeError):
    """A database that must hold EMS's data has no schema: refuse rather than start empty."""


def server_connection(settings: Settings) -> pymysql.Connection:
    """Open a connection to the database server (no database selected)."""
    return pymysql.connect(host=settings.db_host, port=settings.db_port,
                           user=settings.db_user, password=settings.db_password)


def databases_without_schema(settings: Settings, services=SERVICES_WITH_DATABASE) -> list[str]:
    """Return the databases of `services` that are missing or hold no migrated schema."""
    names = [settings.database_name(service) for service in services]
    connection = server_connection(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_schema FROM information_schema.tables "
                           "WHERE table_name = %s AND table_schema IN %s", (SCHEMA_MARKER_TABLE, names))
            migrated = {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()
    return [name for name in names if name not in migrated]


def refuse_if_data_missing(settings: Settings, services=SERVICES_WITH_DATABASE) -> None:
    """Raise MissingDataError when EMS_EXPECT_EXISTING_DATA is on and a database has no schema.

    A deployment that was initialised and now finds an empty database (a database
    node restarted on a fresh volume, the wrong server) must stop with the reason:
    creating the schema again would bring EMS back silently empty.
    """
    if not settings.expect_existing_data:
        return
    missing = databases_without_schema(settings, services)
    if missing:
        raise MissingDataError(
            f"EMS_EXPECT_EXISTING_DATA is true, but {', '.join(missing)} on {settings.db_host}:"
            f"{settings.db_port} hold no EMS schema (no {SCHEMA_MARKER_TABLE} table): the data of this "
            "deployment is gone or this is the wrong database server. Nothing was created. Restore the "
            "databases (mariadb-backup) or point EMS_DB_HOST at the right server; only for a new, empty "
            "deployment set EMS_EXPECT_EXISTING_DATA=false.")


def utcnow() -> datetime:
    """Return the current time as a naive UTC datetime (how the databases store times)."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_databases(settings: Settings, services=SERVICES_WITH_DATABASE) -> None:
    """Create each service's database if it does not exist yet (utf8mb4)."""
    connection = server_connection(settings)
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
    connection = server_connection(settings)
    try:
        with connection.cursor() as cursor:
            for service in services:
                cursor.execute(f"DROP DATABASE IF EXISTS `{settings.database_name(service)}`")
    finally:
        connection.close()


# Every session reads and writes UTC, whatever the server's own zone: column defaults
# such as CURRENT_TIMESTAMP and NOW() follow the session's zone.
UTC_SESSION = "SET time_zone = '+00:00'"


def engine_options() -> dict:
    """Return SQLAlchemy engine options: UTC sessions that survive database restarts."""
    return {"pool_pre_ping": True, "pool_recycle": 1800,
            "connect_args": {"init_command": UTC_SESSION}}


# MariaDB errors after which the same statement may well succeed: the server or the
# connection went away, or the transaction lost a lock race and was rolled back.
TRANSIENT_ERROR_CODES = frozenset({
    1040,  # too many connections
    1047,  # WSREP has not yet prepared the node (Galera)
    1053,  # server shutdown in progress
    1205,  # lock wait timeout
    1213,  # deadlock
    1290, 1836,  # read-only (a replica being promoted)
    1305,  # savepoint does not exist (its transaction was rolled back)
    1317, 1927,  # query interrupted, connection killed
    2002, 2003, 2006, 2013, 2055,  # cannot connect, server gone, lost connection
})
# Errors that the data of one message causes: storing it again can only fail again.
DATA_ERROR_CODES = frozenset({
    1048,  # column cannot be null
    1062,  # duplicate entry (other than the one a consumer expects)
    1264, 1265, 1292, 1366, 1406,  # out of range, truncated, incorrect value, too long
    1690,  # value out of range in an expression
    3140,  # invalid JSON text
    4025,  # CHECK constraint failed
})


def database_error_code(error: BaseException) -> int | None:
    """Return MariaDB's error number behind a SQLAlchemy or PyMySQL error, if it has one."""
    original = getattr(error, "orig", error)
    if not isinstance(original, pymysql.err.MySQLError):
        return None  # not from the database, whatever its arguments hold
    arguments = original.args
    return arguments[0] if arguments and isinstance(arguments[0], int) else None


def is_transient(error: BaseException) -> bool:
    """Tell whether a database error may go away on retry (outage, lock race).

    PyMySQL's own connection errors carry no MariaDB code (a connect that failed, a
    socket closed: none, or 0) and are transient; other errors without one are not.
    """
    if getattr(error, "connection_invalidated", False):  # SQLAlchemy saw the connection die
        return True
    code = database_error_code(error)
    if code in TRANSIENT_ERROR_CODES:
        return True
    original = getattr(error, "orig", error)
    return not code and isinstance(original, (pymysql.err.OperationalError, pymysql.err.InterfaceError))


def blames_the_message(error: BaseException) -> bool:
    """Tell whether a database error is caused by the data being written (retrying cannot help).

    Errors that are neither this nor transient (a missing table, denied access) say the
    deployment is broken, not the message: consumers wait for it to be mended rather than
    dead-letter every message meanwhile.
    """
    original = getattr(error, "orig", error)
    return (isinstance(original, (pymysql.err.DataError, pymysql.err.IntegrityError))
            or database_error_code(error) in DATA_ERROR_CODES)


def refusal_reason(error: BaseException) -> str:
    """Return the dead-letter reason for a message the database refused for good."""
    original = getattr(error, "orig", error)
    arguments = getattr(original, "args", ())
    # PyMySQL's errors are (code, message): the message alone, not the tuple's repr.
    message = arguments[1] if len(arguments) > 1 else str(original)
    return f"database-refused: {database_error_code(error)} {str(message)[:200]}"
