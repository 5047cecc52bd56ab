"""Support follows users through the real notifier, support app and consumers: a renamed
user's conversation and messages take the new name, a deleted client's conversation is
closed and kept for administrators under "deleted user" while their posts are
dead-lettered, and tokens of ended sessions are refused."""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter

import pytest

from common.amqp import ConfirmingPublisher, connect, take_all
from common.auth import Identity, mint_access_token
from common.messages import Event, UserState
from common.topology import (
    CHAT_MESSAGE_KEY,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    EVENTS_EXCHANGE,
    SUPPORT_EVENTS_QUEUE,
)
from support.users import DELETED_SENDER, DELETED_USER_NAME
from tests.poison import POISON, publish_poison
from tests.support.conftest import client_message, support_database, wait_until

# Sequences above any the portal of this run could have published: events of the tests win.
SEQUENCES = itertools.count(int(time.time() * 1000))


@pytest.fixture(scope="module")
def publish_user_event(migrated):
    """Return a function that publishes a user event to ems.events, as the portal's relay does."""
    publisher = ConfirmingPublisher(migrated)

    def publish(event_type: str, user_id: int, name: str, role: str = "client", token_version: int = 0):
        event = Event(next(SEQUENCES), event_type, "2026-12-01T12:00:00.000+00:00",
                      user=UserState(user_id, name, role, token_version))
        publisher.publish(EVENTS_EXCHANGE, event_type, event.to_json())

    yield publish
    publisher.close()


def stored(settings, query: str, *arguments):
    connection = support_database(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, arguments)
            return cursor.fetchall()
    finally:
        connection.close()


def conversation_of(settings, client_id: int):
    rows = stored(settings, "SELECT id, client_name, state FROM conversations WHERE client_id = %s",
                  client_id)
    return rows[0] if rows else None


def sender_names(settings, user_id: int) -> set[str]:
    return {name for (name,) in stored(settings, "SELECT sender_name FROM messages WHERE sender_id = %s",
                                       user_id)}


def test_a_renamed_client_keeps_the_new_name_even_when_posting_with_an_older_token(
        users, migrated, publish_user_event):
    client = users("client")
    client.send("hello there")
    wait_until(lambda: sender_names(migrated, client.id), message="the first message stored")
    publish_user_event("user.updated", client.id, "Rita Renamed")
    wait_until(lambda: conversation_of(migrated, client.id)[1] == "Rita Renamed", message="the rename")
    assert sender_names(migrated, client.id) == {"Rita Renamed"}
    # The socket's token still carries the old name: it must not bring it back.
    client.send("one more question")
    wait_until(lambda: len(stored(migrated, "SELECT id FROM messages WHERE sender_id = %s", client.id)) == 2,
               message="the second message stored")
    assert conversation_of(migrated, client.id)[1] == "Rita Renamed"
    assert sender_names(migrated, client.id) == {"Rita Renamed"}


def test_a_deleted_clients_conversation_is_closed_kept_for_admins_and_refuses_posts(
        users, migrated, publish_user_event, publish_chat, dead_letters):
    admin, client = users("admin"), users("client")
    client.send("please delete my account")
    conversation_id = admin.wait_for("chat:message", sender_id=client.id)["conversation_id"]
    publish_user_event("user.deleted", client.id, client.identity.name)
    closed = admin.wait_for("chat:conversation", id=conversation_id, state="resolved")
    assert closed["client_name"] == DELETED_USER_NAME
    assert conversation_of(migrated, client.id)[1:] == (DELETED_USER_NAME, "resolved")
    # The transcript stays, for administrators, under the new name.
    inbox = admin.http("GET", "/api/support/conversations", params={"resolved": "1"}).json()["conversations"]
    assert [row["client_name"] for row in inbox if row["id"] == conversation_id] == [DELETED_USER_NAME]
    history = admin.http("GET", f"/api/support/conversations/{conversation_id}/messages").json()["messages"]
    assert "please delete my account" in [message["body"] for message in history]
    assert sender_names(migrated, client.id) == {DELETED_USER_NAME}
    # A post that still reaches support (sent before the socket was closed) is refused.
    marker = f"after-deletion-{uuid.uuid4().hex[:8]}"
    publish_chat(CHAT_MESSAGE_KEY, client_message(client.id, marker, body=marker))
    assert dead_letters(marker) == DELETED_SENDER
    assert conversation_of(migrated, client.id)[1:] == (DELETED_USER_NAME, "resolved")
    assert not stored(migrated, "SELECT id FROM messages WHERE body = %s", marker)


def test_support_refuses_the_tokens_of_an_ended_session(users, migrated, publish_user_event):
    client = users("client")
    assert client.http("GET", "/api/support/conversation").status_code == 200
    publish_user_event("user.updated", client.id, client.identity.name, token_version=1)
    wait_until(lambda: client.http("GET", "/api/support/conversation").status_code == 401,
               message="the old token refused")
    fresh = mint_access_token(migrated, Identity(client.id, "client", "x", token_version=1))
    assert client.http("GET", "/api/support/conversation",
                       headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_poison_user_events_are_dead_lettered_once_and_the_next_event_still_applies(
        users, migrated, publish_user_event):
    client = users("client")
    client.send("hello there")
    wait_until(lambda: conversation_of(migrated, client.id), message="the conversation")
    connection = connect(migrated)
    try:
        channel = connection.channel()
        copies = channel.queue_declare(queue="", exclusive=True).method.queue
        channel.queue_bind(copies, DEAD_LETTER_EXCHANGE, routing_key=SUPPORT_EVENTS_QUEUE + ".#")
        channel.confirm_delivery()
        publish_poison(channel, EVENTS_EXCHANGE, "user.updated")
        publish_user_event("user.updated", client.id, "After Poison")

        wait_until(lambda: conversation_of(migrated, client.id)[1] == "After Poison", timeout=5,
                   message="the event behind the poison applied")
        dead: list = []
        wait_until(lambda: dead.extend(take_all(channel, copies)) or len(dead) >= len(POISON),
                   message="every poison event dead-lettered")
    finally:
        connection.close()
    assert Counter(body for _, _, body in dead) == Counter(body for _, body, _ in POISON)
    assert all(properties.headers[DEAD_LETTER_REASON_HEADER].isprintable() for _, properties, _ in dead)
