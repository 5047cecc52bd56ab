"""What support does with each inbound chat message: validate, authorize, store, emit.

Each handler commits before it returns; the consumer acks only after that.
"""

from __future__ import annotations

import json
import logging

from flask import Flask

from common.logs import log_event
from common.topology import CHAT_MESSAGE_KEY, CHAT_PRESENCE_KEY, CHAT_READ_KEY, CHAT_TYPING_KEY
from support import chat, presence
from support.chat import Inbound, Rejected
from support.extensions import db
from support.notify import Broadcaster
from support.responder import Responder

logger = logging.getLogger(__name__)


class ChatService:
    """Handle inbound chat messages inside an app context."""

    def __init__(self, app: Flask, broadcaster: Broadcaster, responder: Responder):
        self.app = app
        self.broadcaster = broadcaster
        self.responder = responder
        self.admins_online: bool | None = None
        self.handlers = {
            CHAT_MESSAGE_KEY: self.on_message,
            CHAT_TYPING_KEY: self.on_typing,
            CHAT_READ_KEY: self.on_read,
        }

    def handle(self, routing_key: str, body: bytes) -> None:
        """Process one inbound message; raise Rejected when it must be dead-lettered."""
        with self.app.app_context():
            try:
                if routing_key == CHAT_PRESENCE_KEY:
                    self.on_presence(body)
                    return
                handler = self.handlers.get(routing_key)
                if handler is None:
                    raise Rejected(f"unknown routing key {routing_key!r}")
                handler(chat.parse_inbound(body))
            except Rejected:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    def on_message(self, inbound: Inbound) -> None:
        """Store a chat message once, emit it, and let the bot answer when it is its turn."""
        payload, sender = inbound.payload, inbound.sender
        client_message_id = payload.get("client_message_id")
        try:
            client_message_id = chat.clean_client_message_id(client_message_id)
            body = chat.clean_body(payload.get("body"))
            conversation = chat.conversation_for_sender(sender, payload.get("conversation_id"))
        except Rejected as error:
            db.session.rollback()
            if isinstance(client_message_id, str):
                self.broadcaster.error(sender.user_id, client_message_id[:64], str(error))
            raise
        posted = chat.post_message(sender, conversation, body, client_message_id)
        db.session.commit()
        log_event(logger, "support.message_stored", conversation_id=conversation.id,
                  message_id=posted.message.id, role=sender.role, duplicate=not posted.created)
        # A redelivered message is emitted again: the first emit may not have happened.
        self.broadcaster.message(conversation, posted.message)
        if posted.state_changed:
            self.broadcaster.conversation(conversation)
        if sender.role == "client" and conversation.state == "bot":
            self.responder.submit(conversation.id, posted.message.id)

    def on_typing(self, inbound: Inbound) -> None:
        """Forward a typing indicator to the other party only."""
        conversation = self._conversation_of(inbound)
        self.broadcaster.typing(conversation, inbound.sender)

    def on_read(self, inbound: Inbound) -> None:
        """Record a read receipt and tell the other party."""
        conversation = self._conversation_of(inbound)
        message_id = chat.positive_id(inbound.payload.get("message_id"), "message_id")
        advanced = chat.mark_read(inbound.sender, conversation, message_id)
        db.session.commit()
        if advanced:
            self.broadcaster.read(conversation, inbound.sender, message_id)

    def on_presence(self, body: bytes) -> None:
        """Record a notifier's connected administrators; emit when "anyone online" changes."""
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Rejected(f"not valid JSON: {error}") from error
        if not isinstance(value, dict):
            raise Rejected("not a JSON object")
        instance, admin_ids = presence.parse_presence(value)
        presence.record_presence(instance, admin_ids)
        db.session.commit()
        self.refresh_presence()

    def refresh_presence(self) -> None:
        """Emit `presence` when whether any administrator is online has changed."""
        with self.app.app_context():
            online = presence.admins_online()
            db.session.remove()
        if online != self.admins_online:
            self.admins_online = online
            self.broadcaster.presence(online)
            log_event(logger, "support.presence_changed", admins_online=online)

    def _conversation_of(self, inbound: Inbound):
        return chat.readable_conversation(inbound.sender, inbound.payload.get("conversation_id"))
