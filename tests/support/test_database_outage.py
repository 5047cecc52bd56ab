"""The database goes away under the support consumer and comes back: nothing is lost,
nothing is stored twice, and each client's messages are stored in the order sent.

The consumer reaches MariaDB through a TCP proxy this test controls, so cutting
the database off disturbs nobody else.
"""

import uuid

import pytest

from common.amqp import ConfirmingPublisher
from common.settings import load_settings
from common.topology import CHAT_EXCHANGE, CHAT_MESSAGE_KEY, SUPPORT_INBOUND_QUEUE
from support.consumer import BATCH_MAX
from tests.processes import ServiceProcess, TcpProxy, python_module, unacknowledged
from tests.support.conftest import (
    assert_stored_once_in_order,
    client_message,
    conversation_roles,
    new_user_id,
    support_database,
    wait_until,
)

pytestmark = pytest.mark.slow

CLIENTS = 20
MESSAGES_PER_CLIENT = 30


def stored(settings, client_message_id: str) -> list[tuple]:
    connection = support_database(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT m.id, m.body FROM messages m WHERE m.client_message_id IN (%s, "
                           "(SELECT CONCAT('reply-to:', id) FROM messages WHERE client_message_id = %s))",
                           (client_message_id, client_message_id))
            return list(cursor.fetchall())
    finally:
        connection.close()


@pytest.fixture
def consumer_behind_proxy(migrated, support_vhost):
    """Run a consumer of its own vhost that reaches the database through a proxy; yield both."""
    proxy = TcpProxy(migrated.db_port).start()
    consumer = ServiceProcess(python_module("support", "consumer"), name="support-outage-consumer",
                              env={"EMS_AMQP_URL": support_vhost, "EMS_DB_PORT": str(proxy.port)})
    with proxy, consumer:
        wait_until(lambda: "support.consuming" in consumer.log(), timeout=30, message="the consumer")
        yield consumer, proxy


@pytest.fixture
def publish(support_vhost):
    """Return a function that publishes chat messages to the test's vhost, as the notifier does."""
    publisher = ConfirmingPublisher(load_settings(amqp_url=support_vhost))
    yield lambda body: publisher.publish(CHAT_EXCHANGE, CHAT_MESSAGE_KEY, body)
    publisher.close()


def test_message_sent_while_the_database_is_down_is_stored_once_it_returns(migrated, consumer_behind_proxy,
                                                                           publish):
    consumer, proxy = consumer_behind_proxy
    proxy.cut()
    client_message_id = uuid.uuid4().hex
    publish(client_message(new_user_id(), client_message_id, "hello while down"))
    wait_until(lambda: "support.database_unavailable" in consumer.log(), timeout=20,
               message="the consumer noticing the outage")
    assert stored(migrated, client_message_id) == []
    proxy.restore()
    rows = wait_until(lambda: (r := stored(migrated, client_message_id)) and len(r) == 2 and r,
                      timeout=30, message="the message and the bot's answer")
    assert [body for _, body in rows][0] == "hello while down"
    assert consumer.running
    assert len(stored(migrated, client_message_id)) == 2  # the message and one bot answer, no more


def test_each_clients_messages_are_stored_in_the_order_sent_across_an_outage(migrated, support_vhost,
                                                                           consumer_behind_proxy, publish):
    consumer, proxy = consumer_behind_proxy
    clients = [new_user_id() for _ in range(CLIENTS)]
    # Round by round, every client sends its next message: consecutive batches mix them all.
    sends = [(client, uuid.uuid4().hex) for _ in range(MESSAGES_PER_CLIENT) for client in clients]
    first, second, third = (sends[part * len(sends) // 3:(part + 1) * len(sends) // 3] for part in range(3))

    for send in first:
        publish(client_message(*send))
    proxy.cut()  # mid-stream: the first third is still being stored
    for send in second:
        publish(client_message(*send))
    wait_until(lambda: "support.database_unavailable" in consumer.log(), timeout=20,
               message="the consumer noticing the outage")
    # The consumer holds more than the batch that failed: what is behind it must wait its turn.
    wait_until(lambda: unacknowledged(support_vhost, SUPPORT_INBOUND_QUEUE) > BATCH_MAX, timeout=20,
               message="the consumer holding more than one batch during the outage")
    proxy.restore()
    for send in third:
        publish(client_message(*send))

    conversations = wait_until(
        lambda: (found := conversation_roles(migrated, clients))
        and sum(len(messages) for messages in found.values()) >= 2 * len(sends) and found,
        timeout=60, message="every message and its answer")
    assert_stored_once_in_order(conversations, sends)
    assert consumer.running
    assert "support.dead_lettered" not in consumer.log()
