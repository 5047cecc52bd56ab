"""Read marks kept by the consumer's batches: writing means having read."""

import json

import sqlalchemy as sa

from common.auth import Identity
from common.topology import CHAT_MESSAGE_KEY
from support import chat
from support.extensions import db
from support.models import Message
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
