"""What the consumer's batches do: message order, stored sends, read marks, administrators' presence."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from common.auth import Identity
from common.topology import CHAT_MESSAGE_KEY, CHAT_PRESENCE_KEY
from support import chat, presence
from support.extensions import db
from support.models import Conversation, Message
from support.notify import Broadcaster
from support.service import ChatService
from tests.support.conftest import new_user_id
from tests.support.test_responder import make_responder


def inbound(sender: Identity, **payload) -> tuple[str, bytes]:
    return CHAT_MESSAGE_KEY, json.dumps({
        "sender": {"id": sender.user_id, "role": sender.role, "name": sender.name},
        "payload": payload, "received_at": "2026-11-26T12:00:00+00:00"}).encode()


def message_id(app, client_message_id: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Message.id).where(Message.client_message_id == client_message_id))


def conversation_messages(app, client: Identity) -> list[tuple[str, str]]:
    """Return the (sender role, body) of the client's conversation, oldest first ([]: none)."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Message.sender_role, Message.body).join(Conversation)
            .where(Conversation.client_id == client.user_id).order_by(Message.id))
        return [tuple(row) for row in rows]


def test_messages_of_one_conversation_in_one_batch_keep_their_order_with_the_bots_answers(
        migrated, fake_monitor):
    app, responder, emitter = make_responder(migrated, fake_monitor)
    service = ChatService(app, Broadcaster(emitter), responder)
    client, other = Identity(new_user_id(), "client", "Cleo"), Identity(new_user_id(), "client", "Otto")

    reasons = service.process([
        inbound(client, client_message_id=f"a-{client.user_id}", body="hello"),
        inbound(other, client_message_id=f"a-{other.user_id}", body="hello"),
        inbound(client, client_message_id=f"b-{client.user_id}", body="talk to a human"),
        inbound(client, client_message_id=f"c-{client.user_id}", body="are you there?"),
    ], look_up_sends=False)

    assert reasons == [None, None, None, None]
    roles = [role for role, _ in conversation_messages(app, client)]
    # Each answer follows its question; after the hand-off the bot stays quiet.
    assert roles == ["client", "bot", "client", "bot", "client"]
    assert [role for role, _ in conversation_messages(app, other)] == ["client", "bot"]
    # Browsers receive them in the same order.
    with app.app_context():
        conversation_id = chat.conversation_of_client(client.user_id).id
    emitted = [(data["sender_role"], data["body"]) for event, data, _ in emitter.emits
               if event == "chat:message" and data["conversation_id"] == conversation_id]
    assert emitted == conversation_messages(app, client)


def test_a_batch_that_stores_a_stored_send_again_fails_whole_and_succeeds_with_the_look_up(
        migrated, fake_monitor):
    app, responder, emitter = make_responder(migrated, fake_monitor)
    service = ChatService(app, Broadcaster(emitter), responder)
    client, other = Identity(new_user_id(), "client", "Cleo"), Identity(new_user_id(), "client", "Otto")
    retried = inbound(client, client_message_id=f"r-{client.user_id}", body="hello")
    assert service.process([retried], look_up_sends=False) == [None]

    batch = [inbound(other, client_message_id=f"n-{other.user_id}", body="hello"), retried]
    with pytest.raises(IntegrityError):
        service.process(batch, look_up_sends=False)
    assert conversation_messages(app, other) == []  # nothing of the failed batch was kept

    assert service.process(batch) == [None, None]
    assert [role for role, _ in conversation_messages(app, client)] == ["client", "bot"]
    assert [role for role, _ in conversation_messages(app, other)] == ["client", "bot"]


def test_each_sender_has_read_up_to_their_newest_message_of_the_batch(migrated, fake_monitor):
    app, responder, emitter = make_responder(migrated, fake_monitor)
    service = ChatService(app, Broadcaster(emitter), responder)
    client = Identity(new_user_id(), "client", "Cleo")
    admin = Identity(new_user_id(), "admin", "Ada")
    first, second = f"c1-{client.user_id}", f"c2-{client.user_id}"

    assert service.process([inbound(client, client_message_id=first, body="talk to a human")]) == [None]
    with app.app_context():
        conversation_id = chat.conversation_of_client(client.user_id).id
    replies = [f"a1-{admin.user_id}", f"a2-{admin.user_id}"]
    reasons = service.process([
        inbound(admin, client_message_id=replies[0], body="Hello, Ada here", conversation_id=conversation_id),
        inbound(client, client_message_id=second, body="Thanks!"),
        inbound(admin, client_message_id=replies[1], body="Anything else?", conversation_id=conversation_id),
    ])

    assert reasons == [None, None, None]
    with app.app_context():
        assert chat.last_read(conversation_id, admin.user_id) == message_id(app, replies[1])
        assert chat.last_read(conversation_id, client.user_id) == message_id(app, second)
    # A redelivered old message never moves a read mark backwards.
    service.process([inbound(client, client_message_id=first, body="talk to a human")])
    with app.app_context():
        assert chat.last_read(conversation_id, client.user_id) == message_id(app, second)


def presence_report(instance: str, admin_id: int, at: datetime) -> tuple[str, bytes]:
    return CHAT_PRESENCE_KEY, json.dumps({"instance": instance, "admin_ids": [admin_id],
                                          "at": at.isoformat()}).encode()


def test_a_presence_report_that_waited_in_the_queue_does_not_bring_its_admin_back(migrated, fake_monitor):
    app, responder, emitter = make_responder(migrated, fake_monitor)
    service = ChatService(app, Broadcaster(emitter), responder)
    stale_admin, live_admin = new_user_id(), new_user_id()
    now = datetime.now(UTC)

    assert service.process([
        presence_report(f"stopped-{stale_admin}", stale_admin, now - timedelta(minutes=2)),
        presence_report(f"running-{live_admin}", live_admin, now),
    ]) == [None, None]

    with app.app_context():
        online = presence.online_admin_ids()
    # Leave nobody online for the tests that follow: the running instance's admin leaves.
    service.process([(CHAT_PRESENCE_KEY, json.dumps({"instance": f"running-{live_admin}", "admin_ids": [],
                                                     "at": datetime.now(UTC).isoformat()}).encode())])
    assert live_admin in online and stale_admin not in online
