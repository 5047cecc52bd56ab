"""A message that arrives while the database is unreachable is stored once it is back.

The consumer reaches MariaDB through a TCP proxy this test controls, so cutting
the database off disturbs nobody else.
"""

import json
import uuid

import pymysql
import pytest

from common.amqp import ConfirmingPublisher
from common.settings import load_settings
from common.topology import CHAT_EXCHANGE, CHAT_MESSAGE_KEY
from tests.processes import ServiceProcess, TcpProxy, python_module
from tests.support.conftest import new_user_id, wait_until

pytestmark = pytest.mark.slow


def stored(settings, client_message_id: str) -> list[tuple]:
    connection = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                                 password=settings.db_password, database=settings.database_name("support"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT m.id, m.body FROM messages m WHERE m.client_message_id IN (%s, "
                           "(SELECT CONCAT('reply-to:', id) FROM messages WHERE client_message_id = %s))",
                           (client_message_id, client_message_id))
            return list(cursor.fetchall())
    finally:
        connection.close()


def test_message_sent_while_the_database_is_down_is_stored_once_it_returns(migrated, support_vhost):
    proxy = TcpProxy(migrated.db_port).start()
    consumer = ServiceProcess(python_module("support", "consumer"), name="support-outage-consumer",
                              env={"EMS_AMQP_URL": support_vhost, "EMS_DB_PORT": str(proxy.port)})
    publisher = ConfirmingPublisher(load_settings(amqp_url=support_vhost))
    with consumer:
        wait_until(lambda: "support.consuming" in consumer.log(), timeout=30, message="the consumer")
        proxy.cut()
        client_message_id = uuid.uuid4().hex
        publisher.publish(CHAT_EXCHANGE, CHAT_MESSAGE_KEY, json.dumps({
            "sender": {"id": new_user_id(), "role": "client", "name": "Dora"},
            "payload": {"client_message_id": client_message_id, "body": "hello while down"},
            "received_at": "2026-11-26T12:00:00+00:00"}).encode())
        wait_until(lambda: "support.database_unavailable" in consumer.log(), timeout=20,
                   message="the consumer noticing the outage")
        assert stored(migrated, client_message_id) == []
        proxy.restore()
        rows = wait_until(lambda: (r := stored(migrated, client_message_id)) and len(r) == 2 and r,
                          timeout=30, message="the message and the bot's answer")
        assert [body for _, body in rows][0] == "hello while down"
        assert consumer.running
    publisher.close()
    proxy.close()
    assert len(stored(migrated, client_message_id)) == 2  # the message and one bot answer, no more
