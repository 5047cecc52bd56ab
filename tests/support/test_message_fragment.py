"""A chat message is rendered once, by the server: the `chat:message` event carries the page's item."""

from __future__ import annotations

import json

from flask import render_template

from common.auth import Identity
from common.topology import CHAT_MESSAGE_KEY
from support import chat
from support.extensions import db
from support.notify import Broadcaster, message_renderer
from support.service import ChatService
from tests.support.conftest import new_user_id
from tests.support.test_responder import make_responder


def sent(sender: Identity, **payload) -> tuple[str, bytes]:
    return CHAT_MESSAGE_KEY, json.dumps({
        "sender": {"id": sender.user_id, "role": sender.role, "name": sender.name},
        "payload": payload, "received_at": "2026-11-26T12:00:00+00:00"}).encode()


def test_the_message_event_carries_the_same_escaped_item_as_the_page(migrated, fake_monitor):
    app, responder, emitter = make_responder(migrated, fake_monitor)
    service = ChatService(app, Broadcaster(emitter, message_renderer(app)), responder)
    client = Identity(new_user_id(), "client", "Zoë <i>")

    assert service.process([
        sent(client, client_message_id=f"f-{client.user_id}", body="<script>alert(1)</script> & co"),
        sent(client, client_message_id=f"h-{client.user_id}", body="hello"),
    ]) == [None, None]

    events = [data for event, data, _ in emitter.emits if event == "chat:message"]
    question = next(data for data in events if data["sender_role"] == "client")
    answer = next(data for data in events if data["sender_role"] == "bot")
    assert 'class="chat-message from-client"' in question["html"]
    assert f'data-message-id="{question["id"]}"' in question["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in question["html"]
    assert "Zoë &lt;i&gt;" in question["html"] and "<script>" not in question["html"]
    assert 'class="chat-bot-badge"' in answer["html"] and "from-bot" in answer["html"]
    # The history the page renders holds the very same items.
    with app.test_request_context("/support/widget"):
        conversation = chat.conversation_of_client(client.user_id)
        messages, _ = chat.history(conversation)
        page = render_template("support/_messages.html", conversation=conversation, messages=messages,
                               has_earlier=False)
        db.session.remove()
    assert question["html"].strip() in page and answer["html"].strip() in page


def test_a_broadcaster_without_templates_sends_the_fields_alone(migrated, fake_monitor):
    app, responder, emitter = make_responder(migrated, fake_monitor)
    service = ChatService(app, Broadcaster(emitter), responder)
    client = Identity(new_user_id(), "client", "Nia")

    service.process([sent(client, client_message_id=f"g-{client.user_id}", body="hello")])

    first = next(data for event, data, _ in emitter.emits if event == "chat:message")
    assert "html" not in first and first["body"] == "hello"
