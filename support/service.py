"""What support does with inbound chat messages: validate, authorize, store, emit.

Messages are processed in small batches, one transaction each. A batch locks
all its conversations in one go (creating new clients' ones), then writes its
messages and the bot's answers in a few multi-row inserts: the statements per
batch barely grow with its size. What must reach browsers (emits) and the
bot's slower work are collected as effects and run only after the commit; the
consumer acks after that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask

from common.auth import Identity
from common.logs import log_event
from common.messages import InvalidMessage, load_json_object
from common.topology import CHAT_MESSAGE_KEY, CHAT_PRESENCE_KEY, CHAT_READ_KEY, CHAT_TYPING_KEY
from support import chat, presence, users
from support.chat import Inbound, Prefetched, Rejected
from support.extensions import db
from support.models import Message
from support.notify import Broadcaster
from support.responder import Responder

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """The outcome of a batch: a rejection reason per message (None: done) and the effects."""

    known: Prefetched = field(default_factory=Prefetched)
    # Chat messages parsed for the prefetch, by body: each is parsed once.
    parsed: dict[bytes, Inbound] = field(default_factory=dict)
    reasons: list[str | None] = field(default_factory=list)
    effects: list[Callable[[], None]] = field(default_factory=list)
    # (conversation id, sender id, role) -> the sender's newest message in this batch.
    latest_own: dict[tuple[int, int, str], int] = field(default_factory=dict)
    # Added since the last flush: messages (with their sender), and the bot's answers
    # (with the message answered), which need that message's id before they can be added.
    unflushed: list[tuple[Identity, Message]] = field(default_factory=list)
    unflushed_answers: list[tuple[Message, Message, str]] = field(default_factory=list)
    # Senders of this batch's chat messages whose accounts were deleted: refused.
    deleted_senders: set[int] = field(default_factory=set)

    def after_commit(self, effect: Callable[[], None]) -> None:
        self.effects.append(effect)

    def has_unflushed(self, conversation_id: int) -> bool:
        """Tell whether a message of this conversation waits for the next flush."""
        return any(message.conversation_id == conversation_id for _, message in self.unflushed)

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

    def process(self, messages: list[tuple[str, bytes]], look_up_sends: bool = True) -> list[str | None]:
        """Process (routing key, body) pairs in one transaction; return each one's rejection reason.

        Without `look_up_sends`, a send stored before is not looked for: storing it again
        breaks the unique key and the whole batch fails with an IntegrityError, to be
        processed again with the look-up. Database errors propagate after a rollback
        (nothing of the batch is kept); effects run only once everything is committed.
        """
        batch = Batch()
        with self.app.app_context():
            try:
                batch.known = self._prefetch(messages, look_up_sends, batch)
                for routing_key, body in messages:
                    batch.reasons.append(self._dispatch(routing_key, body, batch))
                self._flush(batch)
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

    @staticmethod
    def _prefetch(messages: list[tuple[str, bytes]], look_up_sends: bool, batch: Batch) -> Prefetched:
        """Lock the conversations the batch's chat messages address; find their stored sends."""
        clients, conversation_ids, sends = {}, set(), set()
        for routing_key, body in messages:
            if routing_key == CHAT_MESSAGE_KEY:
                try:
                    batch.parsed[body] = chat.parse_inbound(body)
                except InvalidMessage:
                    continue  # rejected with its reason when its turn comes
        # Senders as the newest user events say: their current names, and who was deleted.
        batch.parsed, batch.deleted_senders = users.with_known_senders(batch.parsed)
        for routing_key, body in messages:
            if routing_key != CHAT_MESSAGE_KEY or body not in batch.parsed:
                continue
            try:
                inbound = batch.parsed[body]
                if inbound.sender.user_id in batch.deleted_senders:
                    continue
                if inbound.sender.is_admin:
                    conversation_ids.add(chat.positive_id(inbound.payload.get("conversation_id"),
                                                          "conversation_id"))
                else:
                    clients[inbound.sender.user_id] = inbound.sender.name
                if look_up_sends:
                    sends.add((inbound.sender.user_id,
                               chat.clean_client_message_id(inbound.payload.get("client_message_id"))))
            except InvalidMessage:
                continue  # rejected with its reason when its turn comes
        return chat.prefetch(clients, conversation_ids, sends)

    def _flush(self, batch: Batch) -> None:
        """Write what the batch added: its messages, then the bot's answers, which name their ids."""
        if not batch.unflushed and not batch.unflushed_answers:
            return
        db.session.flush()
        for answer, asked, _ in batch.unflushed_answers:
            answer.client_message_id = chat.bot_reply_marker(asked.id)
            db.session.add(answer)
        db.session.flush()
        for sender, message in batch.unflushed:
            batch.wrote(message.conversation_id, sender, message.id)
            log_event(logger, "support.message_stored", conversation_id=message.conversation_id,
                      message_id=message.id, role=sender.role, duplicate=False)
        for answer, _, rule in batch.unflushed_answers:
            log_event(logger, "support.bot_answered", conversation_id=answer.conversation_id, rule=rule)
        batch.unflushed.clear()
        batch.unflushed_answers.clear()

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
        inbound = batch.parsed.get(body) or chat.parse_inbound(body)
        payload, sender = inbound.payload, inbound.sender
        client_message_id = payload.get("client_message_id")
        try:
            client_message_id = chat.clean_client_message_id(client_message_id)
            if sender.user_id in batch.deleted_senders:
                raise Rejected(users.DELETED_SENDER)
            body_text = chat.clean_body(payload.get("body"))
            conversation = chat.conversation_for_sender(sender, payload.get("conversation_id"), batch.known)
        except InvalidMessage as error:  # Rejected included
            if isinstance(client_message_id, str):
                reason = str(error)
                batch.after_commit(lambda: self.broadcaster.error(sender.user_id, client_message_id[:64],
                                                                  reason))
            raise
        if batch.has_unflushed(conversation.id):
            # Ids follow the conversation's order: its previous message and answer go first.
            self._flush(batch)
        posted = chat.post_message(sender, conversation, body_text, client_message_id, batch.known.stored)
        message, state_changed = posted.message, posted.state_changed
        if posted.created:
            batch.unflushed.append((sender, message))
        else:
            self._flush(batch)  # a send seen earlier in this batch gets its id
            log_event(logger, "support.message_stored", conversation_id=conversation.id,
                      message_id=message.id, role=sender.role, duplicate=True)
        reply, ask_pool = None, False
        if sender.role == "client" and conversation.state == "bot":
            reply, handed_off, ask_pool = self._answer_now(conversation, posted, batch)
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

    def _answer_now(self, conversation, posted, batch: Batch) -> tuple[object, bool, bool]:
        """Store the bot's answer with the message when no network is needed.

        Return (the reply or None, whether the conversation was handed off, whether
        the worker pool must answer instead).
        """
        immediate = self.responder.immediate_answer(posted.message.body)
        if immediate is None:
            return None, False, True
        answer, handoff, rule = immediate
        if posted.created:  # a new message has no answer yet: it is written with the batch
            reply = chat.bot_message(conversation, answer)
            conversation.last_message_at = reply.created_at
            batch.unflushed_answers.append((reply, posted.message, rule))
        else:
            reply = chat.post_bot_message(conversation, answer, reply_to=posted.message.id)
            if reply is None:  # answered by the first delivery: show that answer again
                return chat.bot_reply_to(posted.message.id), False, False
            log_event(logger, "support.bot_answered", conversation_id=conversation.id, rule=rule)
        handed_off = chat.hand_off(conversation) if handoff else False
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
