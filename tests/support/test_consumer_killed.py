"""The support consumer killed mid-stream (SIGKILL) and started again: every message
is stored once, in its client's order, each with one bot answer, and nothing is
dead-lettered. Retried sends (the same client message id published again) are
mixed in, so the redelivered batches meet the unique key and run again."""

import json
import random
import uuid

import pymysql
import pytest

from common.amqp import ConfirmingPublisher
from common.settings import load_settings
from common.topology import CHAT_EXCHANGE, CHAT_MESSAGE_KEY
from tests.processes import ServiceProcess, python_module
from tests.support.conftest import new_user_id, wait_until

pytestmark = pytest.mark.slow

CLIENTS = 60
MESSAGES_PER_CLIENT = 40
RETRIED_SHARE = 0.1
KILL_AFTER_STORED = 300


def conversation_roles(settings, client_ids: list[int]) -> dict[int, list[tuple[str, str | None]]]:
    """Return each client's stored messages, oldest first: (sender role, client message id)."""
    connection = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                                 password=settings.db_password, database=settings.database_name("support"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT c.client_id, m.sender_role, m.client_message_id FROM messages m "
                           "JOIN conversations c ON c.id = m.conversation_id "
                           "WHERE c.client_id IN %s ORDER BY m.id", (tuple(client_ids),))
            conversations = {client_id: [] for client_id in client_ids}
            for client_id, role, client_message_id in cursor.fetchall():
                conversations[client_id].append((role, client_message_id))
            return conversations
    finally:
        connection.close()


def consumer(amqp_url: str, name: str) -> ServiceProcess:
    return ServiceProcess(python_module("support", "consumer"), env={"EMS_AMQP_URL": amqp_url}, name=name)


def client_messages(conversations) -> int:
    return sum(role == "client" for messages in conversations.values() for role, _ in messages)


def test_a_consumer_killed_mid_stream_loses_nothing_and_stores_nothing_twice(migrated, support_vhost):
    clients = [new_user_id() for _ in range(CLIENTS)]
    sends = [(client, uuid.uuid4().hex) for n in range(MESSAGES_PER_CLIENT) for client in clients]
    stream, chance = [], random.Random(5)
    for index, send in enumerate(sends):
        stream.append(send)
        if chance.random() < RETRIED_SHARE:  # a browser sends an earlier message again
            stream.append(sends[chance.randrange(max(0, index - 100), index + 1)])
    publisher = ConfirmingPublisher(load_settings(amqp_url=support_vhost))
    for client, client_message_id in stream:
        publisher.publish(CHAT_EXCHANGE, CHAT_MESSAGE_KEY, json.dumps({
            "sender": {"id": client, "role": "client", "name": f"client {client}"},
            "payload": {"client_message_id": client_message_id, "body": "hello"},
            "received_at": "2026-11-26T12:00:00+00:00"}).encode())
    publisher.close()

    run = uuid.uuid4().hex[:6]
    first = consumer(support_vhost, f"support-killed-{run}-1")
    with first:
        stored_at_kill = wait_until(
            lambda: (count := client_messages(conversation_roles(migrated, clients))) >= KILL_AFTER_STORED
            and count, timeout=60, message="the first consumer storing messages")
        first.kill()
    assert stored_at_kill < len(sends), "the consumer finished before it was killed: nothing was tested"

    second = consumer(support_vhost, f"support-killed-{run}-2")
    with second:
        conversations = wait_until(
            lambda: (found := conversation_roles(migrated, clients))
            and sum(len(messages) for messages in found.values()) >= 2 * len(sends) and found,
            timeout=90, message="every message and its answer")
        assert second.running
    for client in clients:
        expected = [client_message_id for sender, client_message_id in sends if sender == client]
        stored = conversations[client]
        # Each message once, in the order the client sent them, each followed by its one answer.
        assert [client_message_id for role, client_message_id in stored if role == "client"] == expected
        assert [role for role, _ in stored] == ["client", "bot"] * len(expected)
    assert "support.dead_lettered" not in first.log() + second.log()
