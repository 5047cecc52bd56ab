"""What support does with inbound chat messages: validate, authorize, store, emit.

Messages are processed in small batches, one transaction each. What must reach
browsers (emits) and the bot's work are collected as effects and run only
after the commit; the consumer acks after that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask

from common.logs import log_event
from common.messages import InvalidMessage, load_json_object
from common.topology import CHAT_MESSAGE_KEY, CHAT_PRESENCE_KEY, CHAT_READ_KEY, CHAT_TYPING_KEY
from support import chat, presence
from support.chat import Inbound, Rejected
from support.extensions import db
from support.notify import Broadcaster
from support.responder import Responder

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """The outcome of a batch: a rejection reason per message (None: done) and the effects."""

    reasons: list[str | None] = field(default_factory=list)
    effects: list[Callable[[], None]] = field(default_factory=list)
    # (conversation id, sender id, role) -> the sender's newest message in this batch.
    latest_own: dict[tuple[int, int, str], int] = field(default_factory=dict)

    def after_commit(self, effect: Callable[[], None]) -> None:
        self.effects.append(effect)

    def wrote(self, conversation_id: int, sender, message_id: int) -> None:
        """Note a stored message, so that its sender's read mark moves up to it."""
        key = (conversation_id, sender.user_id, sender.role)
        self.latest_own[key] = max(message_id, self.latest_own.get(key, 0))


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
            CHAT_PRESENCE_KEY: self.on_presence,
        }

    def process(self, messages: list[tuple[str, bytes]]) -> list[str | None]:
        """Process (routing key, body) pairs in one transaction; return each one's rejection reason.

        Database errors propagate after a rollback (nothing of the batch is kept);
        effects run only once everything is committed.
        """
        batch = Batch()
        with self.app.app_context():
            try:
                for routing_key, body in messages:
                    batch.reasons.append(self._dispatch(routing_key, body, batch))
                chat.note_own_messages(batch.latest_own)
                db.session.commit()
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()
        for effect in batch.effects:
            effect()
        return batch.reasons

    def _dispatch(self, routing_key: str, body: bytes, batch: Batch) -> str | None:
        handler = self.handlers.get(routing_key)
        try:
            if handler is None:
                raise Rejected(f"unknown routing key {routing_key!r}")
            handler(body, batch)
            return None
        except InvalidMessage as error:  # Rejected included
            # Checks come before the message is written: a rejected one leaves nothing behind
            # but, at most, the sender's own (empty) conversation.
            return str(error)

    def on_message(self, body: bytes, batch: Batch) -> None:
        """Store a chat message once, emit it, and let the bot answer when it is its turn."""
        inbound = chat.parse_inbound(body)
        payload, sender = inbound.payload, inbound.sender
        client_message_id = payload.get("client_message_id")
        try:
            client_message_id = chat.clean_client_message_id(client_message_id)
            body_text = chat.clean_body(payload.get("body"))
            conversation = chat.conversation_for_sender(sender, payload.get("conversation_id"))
        except InvalidMessage as error:  # Rejected included
            if isinstance(client_message_id, str):
                reason = str(error)
                batch.after_commit(lambda: self.broadcaster.error(sender.user_id, client_message_id[:64],
                                                                  reason))
            raise
        posted = chat.post_message(sender, conversation, body_text, client_message_id)
        message, state_changed = posted.message, posted.state_changed
        if posted.created:
            batch.wrote(conversation.id, sender, message.id)
        log_event(logger, "support.message_stored", conversation_id=conversation.id,
                  message_id=message.id, role=sender.role, duplicate=not posted.created)
        reply, ask_pool = None, False
        if sender.role == "client" and conversation.state == "bot":
            reply, handed_off, ask_pool = self._answer_now(conversation, posted)
            state_changed = state_changed or handed_off

        def deliver():
            # A redelivered message is emitted again: the first emit may not have happened.
            self.broadcaster.message(conversation, message)
            if reply is not None:
                self.broadcaster.message(conversation, reply)
            if state_changed:
                self.broadcaster.conversation(conversation)
            if ask_pool:
                self.responder.submit(conversation.id, message.id)

        batch.after_commit(deliver)

    def _answer_now(self, conversation, posted) -> tuple[object, bool, bool]:
        """Store the bot's answer with the message when no network is needed.

        Return (the reply or None, whether the conversation was handed off, whether
        the worker pool must answer instead).
        """
        immediate = self.responder.immediate_answer(posted.message.body)
        if immediate is None:
            return None, False, True
        answer, handoff, rule = immediate
        reply = chat.post_bot_message(conversation, answer, reply_to=posted.message.id,
                                      may_exist=not posted.created)
        if reply is None:  # answered by the first delivery: show that answer again
            return chat.bot_reply_to(posted.message.id), False, False
        handed_off = chat.hand_off(conversation) if handoff else False
        log_event(logger, "support.bot_answered", conversation_id=conversation.id, rule=rule,
                  handoff=handoff)
        return reply, handed_off, False

    def on_typing(self, body: bytes, batch: Batch) -> None:
        """Forward a typing indicator to the other party only."""
        inbound = chat.parse_inbound(body)
        conversation = self._conversation_of(inbound)
        batch.after_commit(lambda: self.broadcaster.typing(conversation, inbound.sender))

    def on_read(self, body: bytes, batch: Batch) -> None:
        """Record a read receipt and tell the other party."""
        inbound = chat.parse_inbound(body)
        conversation = self._conversation_of(inbound)
        message_id = chat.positive_id(inbound.payload.get("message_id"), "message_id")
        if chat.mark_read(inbound.sender, conversation, message_id):
            batch.after_commit(lambda: self.broadcaster.read(conversation, inbound.sender, message_id))

    def on_presence(self, body: bytes, batch: Batch) -> None:
        """Record a notifier's connected administrators; emit when "anyone online" changes."""
        instance, admin_ids, reported_at = presence.parse_presence(load_json_object(body))
        presence.record_presence(instance, admin_ids, reported_at)
        batch.after_commit(self.refresh_presence)

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
