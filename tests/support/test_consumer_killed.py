"""The support consumer killed mid-stream (SIGKILL) and started again: every message
is stored once, in its client's order, each with one bot answer, and nothing is
dead-lettered. Retried sends (the same client message id published again) are
mixed in, so the redelivered batches meet the unique key and run again."""

import random
import uuid

import pytest

from common.amqp import ConfirmingPublisher
from common.settings import load_settings
from common.topology import CHAT_EXCHANGE, CHAT_MESSAGE_KEY, SUPPORT_INBOUND_QUEUE
from tests.processes import ServiceProcess, python_module, unacknowledged
from tests.support.conftest import (
    assert_stored_once_in_order,
    client_message,
    conversation_roles,
    new_user_id,
    wait_until,
)

pytestmark = pytest.mark.slow

CLIENTS = 60
MESSAGES_PER_CLIENT = 40
RETRIED_SHARE = 0.1
KILL_AFTER_STORED = 300


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
        publisher.publish(CHAT_EXCHANGE, CHAT_MESSAGE_KEY, client_message(client, client_message_id))
    publisher.close()

    run = uuid.uuid4().hex[:6]
    first = consumer(support_vhost, f"support-killed-{run}-1")
    with first:
        wait_until(lambda: client_messages(conversation_roles(migrated, clients)) >= KILL_AFTER_STORED,
                   timeout=60, message="the first consumer storing messages")
        # Killed holding deliveries it has not acked: the broker must deliver them again.
        first.kill_holding(lambda: unacknowledged(support_vhost, SUPPORT_INBOUND_QUEUE))
    stored_at_kill = client_messages(conversation_roles(migrated, clients))
    assert stored_at_kill < len(sends), "the consumer finished before it was killed: nothing was tested"

    second = consumer(support_vhost, f"support-killed-{run}-2")
    with second:
        conversations = wait_until(
            lambda: (found := conversation_roles(migrated, clients))
            and sum(len(messages) for messages in found.values()) >= 2 * len(sends) and found,
            timeout=90, message="every message and its answer")
        assert second.running
    assert_stored_once_in_order(conversations, sends)
    assert "support.dead_lettered" not in first.log() + second.log()
