"""A message the database refuses for good is dead-lettered alone with the database's
reason; the other messages of its batch are stored, and the consumer goes on.

No valid chat message breaks a column today (the parsers bound every field to what
the columns hold), so the refusal is injected in this run's own database: a trigger
refuses to insert a message whose body holds a marker, with the error MariaDB gives
for a value too long for its column (1406), as a column narrowed by a migration or a
gap in a parser would.
"""

import re
import secrets
import uuid

import pytest

from common.amqp import ConfirmingPublisher, connect
from common.settings import load_settings
from common.topology import CHAT_EXCHANGE, CHAT_MESSAGE_KEY, DEAD_LETTER_REASON_HEADER, DEAD_LETTERS_QUEUE
from tests.processes import ServiceProcess, python_module
from tests.support.conftest import (
    assert_stored_once_in_order,
    client_message,
    conversation_roles,
    new_user_id,
    support_database,
    wait_until,
)

pytestmark = pytest.mark.slow

CLIENTS = 8
MESSAGES_PER_CLIENT = 5
TOO_LONG = 1406


@pytest.fixture
def refused_marker(migrated):
    """Make the database refuse to store any message whose body holds the returned marker."""
    marker = f"refuse-{secrets.token_hex(4)}"
    trigger = f"refuse_{marker.replace('-', '_')}"
    connection = support_database(migrated)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON messages FOR EACH ROW "
            f"IF NEW.body LIKE '%{marker}%' THEN "
            f"SIGNAL SQLSTATE '22001' SET MESSAGE_TEXT = 'Data too long for column ''body''', "
            f"MYSQL_ERRNO = {TOO_LONG}; END IF")
    try:
        yield marker
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        connection.close()


def dead_letters(amqp_url: str) -> list[tuple[dict, bytes]]:
    """Take every message in the vhost's dead-letter queue."""
    connection = connect(load_settings(amqp_url=amqp_url))
    try:
        channel = connection.channel()
        taken = []
        while (message := channel.basic_get(DEAD_LETTERS_QUEUE, auto_ack=True))[0] is not None:
            taken.append((message[1].headers or {}, message[2]))
        return taken
    finally:
        connection.close()


def test_a_message_the_database_refuses_is_dead_lettered_alone_and_its_batch_stored(
        migrated, support_vhost, refused_marker):
    clients = [new_user_id() for _ in range(CLIENTS)]
    sends = [(client, uuid.uuid4().hex) for _ in range(MESSAGES_PER_CLIENT) for client in clients]
    refused_client, refused_id = clients[2], uuid.uuid4().hex
    stream = [client_message(client, client_message_id) for client, client_message_id in sends]
    # In the middle of the stream, so that it shares a batch with messages before and after it.
    stream.insert(len(stream) // 2, client_message(refused_client, refused_id, f"hi {refused_marker}"))
    publisher = ConfirmingPublisher(load_settings(amqp_url=support_vhost))
    for body in stream:
        publisher.publish(CHAT_EXCHANGE, CHAT_MESSAGE_KEY, body)
    publisher.close()

    consumer = ServiceProcess(python_module("support", "consumer"), env={"EMS_AMQP_URL": support_vhost},
                              name=f"support-refused-{refused_marker}")
    with consumer:
        pid = consumer.process.pid
        conversations = wait_until(
            lambda: (found := conversation_roles(migrated, clients))
            and sum(len(messages) for messages in found.values()) >= 2 * len(sends) and found,
            timeout=30, message="every other message and its answer")
        dead = wait_until(lambda: dead_letters(support_vhost), message="the refused message dead-lettered")
        assert consumer.running and consumer.process.pid == pid, consumer.log()[-3000:]
        log = consumer.log()

    assert [body for _, body in dead] == [stream[len(stream) // 2]]
    assert dead[0][0][DEAD_LETTER_REASON_HEADER].startswith(f"database-refused: {TOO_LONG} ")
    assert_stored_once_in_order(conversations, sends)
    # The refusal failed a batch of several messages, which then went one by one.
    failed_sizes = [int(size) for size in re.findall(r'event=support\.batch_failed attempt="at once" '
                                                     r'error=DataError code=1406 size=(\d+)', log)]
    assert failed_sizes and max(failed_sizes) > 1, log[-3000:]
    assert log.count("event=support.dead_lettered") == 1
