"""How database errors are classified: transient, the message's fault, or neither."""

import pymysql
import pytest
from sqlalchemy import exc

from common.db import blames_the_message, database_error_code, is_transient, refusal_reason


def wrapped(error: pymysql.err.MySQLError) -> exc.DBAPIError:
    """Return the error as SQLAlchemy raises it from a statement."""
    return exc.DBAPIError.instance("INSERT …", {}, error, pymysql.err.Error)


@pytest.mark.parametrize("error", [
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1'"),
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
    pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"),
    pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
    pymysql.err.OperationalError(1053, "Server shutdown in progress"),
    pymysql.err.InternalError(1317, "Query execution was interrupted"),
    pymysql.err.OperationalError(1290, "The MariaDB server is running with the --read-only option"),
    pymysql.err.OperationalError(),  # PyMySQL's own, without a code
    pymysql.err.InterfaceError(0, ""),  # a connection PyMySQL already closed
])
def test_outages_and_lost_lock_races_are_transient(error):
    assert is_transient(error)
    assert is_transient(wrapped(error))
    assert not blames_the_message(wrapped(error))


@pytest.mark.parametrize(("error", "code"), [
    (pymysql.err.DataError(1406, "Data too long for column 'body' at row 1"), 1406),
    (pymysql.err.DataError(1264, "Out of range value for column 'sender_id' at row 1"), 1264),
    (pymysql.err.IntegrityError(1062, "Duplicate entry '7-abc' for key 'uq_messages'"), 1062),
    (pymysql.err.IntegrityError(1452, "Cannot add or update a child row"), 1452),
])
def test_what_the_data_causes_blames_the_message_and_is_not_transient(error, code):
    assert database_error_code(wrapped(error)) == code
    assert not is_transient(wrapped(error))
    assert blames_the_message(wrapped(error))
    assert refusal_reason(wrapped(error)) == f"database-refused: {code} {error.args[1]}"


@pytest.mark.parametrize("error", [
    pymysql.err.ProgrammingError(1146, "Table 'ems_support.messages' doesn't exist"),
    pymysql.err.OperationalError(1045, "Access denied for user 'ems'"),
    pymysql.err.ProgrammingError("not all arguments converted"),  # PyMySQL's own, no code
])
def test_a_broken_deployment_is_neither_transient_nor_the_messages_fault(error):
    assert not is_transient(wrapped(error))
    assert not blames_the_message(wrapped(error))


def test_an_error_not_from_the_database_has_no_code_and_is_not_transient():
    error = KeyError(3_000_000_000)
    assert database_error_code(error) is None
    assert not is_transient(error)
