"""What support does with a batch of inbound chat messages, in one transaction.

`ChatService.process` reads as the steps it takes:

1. parse: `parse_batch` parses each chat message once, with its sender's name
   as the newest user event says (and which senders were deleted);
2. lock and load: `lock_conversations` locks every conversation the batch
   addresses in one statement (creating new clients' ones first) and, when
   asked, finds the sends stored before;
3. decide: one handler per routing key checks the message, posts it and lets
   the bot answer when the answer needs no network;
4. write: `Writes` puts the messages and the bot's answers in a few multi-row
   inserts and moves the senders' read marks; then the commit;
5. after the commit: the effects (emits to browsers, the bot's slower work).

The consumer (`support/consumer.py`) acknowledges the batch once `process` returns.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask

from common.auth import Identity
from common.logs import log_event
from common.messages import ChatMessage, InvalidMessage, parse_presence_report
from common.topology import CHAT_MESSAGE_KEY, CHAT_PRESENCE_KEY, CHAT_READ_KEY, CHAT_TYPING_KEY
from support import chat, presence, users
from support.chat import Posted, Prefetched, Rejected
from support.extensions import db
from support.models import Conversation, Message
from support.notify import Broadcaster
from support.responder import Responder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedBatch:
    """A batch's chat messages parsed once (by body), and the senders whose accounts were deleted."""

    messages: dict[bytes, ChatMessage]
    deleted_senders: frozenset[int]


def parse_batch(messages: list[tuple[str, bytes]]) -> ParsedBatch:
    """Parse the batch's chat messages; the invalid ones are rejected with their reason in their turn."""
    parsed = {}
    for routing_key, body in messages:
        if routing_key == CHAT_MESSAGE_KEY:
            try:
                parsed[body] = chat.parse_inbound(body)
            except InvalidMessage:
                continue
    named, deleted = users.with_known_senders(parsed)
    return ParsedBatch(named, frozenset(deleted))


def lock_conversations(parsed: ParsedBatch, look_up_sends: bool) -> Prefetched:
    """Lock the conversations the batch's chat messages address; find their stored sends if asked."""
    clients, conversation_ids, sends = {}, set(), set()
    for inbound in parsed.messages.values():
        sender, payload = inbound.sender, inbound.payload
        if sender.user_id in parsed.deleted_senders:
            continue
        try:
            if sender.is_admin:
                conversation_ids.add(chat.positive_id(payload.get("conversation_id"), "conversation_id"))
            else:
                clients[sender.user_id] = sender.name
            if look_up_sends:
                sends.add((sender.user_id, chat.clean_client_message_id(payload.get("client_message_id"))))
        except InvalidMessage:
            continue  # rejected with its reason when its turn comes
    return chat.prefetch(clients, conversation_ids, sends)


class Writes:
    """What a batch adds to the session, written in order: its messages, then the bot's answers.

    A bot's answer names the id of the message it answers, which the message gets
    only when it is flushed; a conversation's next message waits for its previous
    one, so ids follow each conversation's order.
    """

    def __init__(self, stored_before: dict[tuple[int, str], Message]):
        self._new_sends: dict[tuple[int, str], Message] = {}
        # Sends stored before the batch or earlier in it: a send is stored once.
        self.sends = ChainMap(self._new_sends, stored_before)
        self._messages: list[tuple[Identity, Message]] = []
        self._answers: list[tuple[Message, Message, str]] = []  # (answer, message answered, rule)
        # (conversation id, sender id, role) -> the sender's newest message: their read mark.
        self._latest_own: dict[tuple[int, int, str], int] = {}

    def add_message(self, sender: Identity, message: Message) -> None:
        self._new_sends[(sender.user_id, message.client_message_id)] = message
        self._messages.append((sender, message))

    def add_answer(self, answer: Message, asked: Message, rule: str) -> None:
        self._answers.append((answer, asked, rule))

    def waits_in(self, conversation_id: int) -> bool:
        """Tell whether a message of this conversation waits for the next flush."""
        return any(message.conversation_id == conversation_id for _, message in self._messages)

    def flush(self) -> None:
        """Write the messages added since the last flush, then the answers, which name their ids."""
        if not self._messages and not self._answers:
            return
        db.session.flush()
        for answer, asked, _ in self._answers:
            answer.client_message_id = chat.bot_reply_marker(asked.id)
            db.session.add(answer)
        db.session.flush()
        for sender, message in self._messages:
            key = (message.conversation_id, sender.user_id, sender.role)
            self._latest_own[key] = max(message.id, self._latest_own.get(key, 0))
            log_event(logger, "support.message_stored", conversation_id=message.conversation_id,
                      message_id=message.id, role=sender.role, duplicate=False)
        for answer, _, rule in self._answers:
            log_event(logger, "support.bot_answered", conversation_id=answer.conversation_id, rule=rule)
        self._messages, self._answers = [], []

    def finish(self) -> None:
        """Write what is left, and move each sender's read mark up to what they wrote."""
        self.flush()
        chat.note_own_messages(self._latest_own)


@dataclass
class Batch:
    """One batch in progress: what it parsed and locked, what it writes, what runs after the commit."""

    parsed: ParsedBatch
    known: Prefetched
    writes: Writes
    effects: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, effect: Callable[[], None]) -> None:
        self.effects.append(effect)


@dataclass(frozen=True)
class Reply:
    """What the bot does about a client's message: an answer now, a hand-off, or the worker pool."""

    answer: Message | None = None
    handed_off: bool = False
    ask_pool: bool = False


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
        with self.app.app_context():
            try:
                parsed = parse_batch(messages)
                known = lock_conversations(parsed, look_up_sends)
                batch = Batch(parsed, known, Writes(known.stored))
                reasons = [self._dispatch(routing_key, body, batch) for routing_key, body in messages]
                batch.writes.finish()
                db.session.commit()
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()
        for effect in batch.effects:
            effect()
        return reasons

    def _dispatch(self, routing_key: str, body: bytes, batch: Batch) -> str | None:
        """Handle one message; return why it is rejected, or None."""
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
        inbound = batch.parsed.messages.get(body) or chat.parse_inbound(body)
        sender = inbound.sender
        client_message_id, text, conversation = self._checked(inbound, batch)
        if batch.writes.waits_in(conversation.id):
            batch.writes.flush()  # its previous message and answer get their ids first
        posted = chat.post_message(sender, conversation, text, client_message_id, batch.writes.sends)
        if posted.created:
            batch.writes.add_message(sender, posted.message)
        else:
            batch.writes.flush()  # a send seen earlier in this batch gets its id
            log_event(logger, "support.message_stored", conversation_id=conversation.id,
                      message_id=posted.message.id, role=sender.role, duplicate=True)
        reply = Reply()
        if sender.role == "client" and conversation.state == "bot":
            reply = self._bot_reply(conversation, posted, batch.writes)
        batch.after_commit(lambda: self._deliver(conversation, posted, reply))

    def _checked(self, inbound: ChatMessage, batch: Batch) -> tuple[str, str, Conversation]:
        """Return the message's client id, text and locked conversation; tell the sender a refusal."""
        sender, payload = inbound.sender, inbound.payload
        client_message_id = payload.get("client_message_id")
        try:
            client_message_id = chat.clean_client_message_id(client_message_id)
            if sender.user_id in batch.parsed.deleted_senders:
                raise Rejected(users.DELETED_SENDER)
            text = chat.clean_body(payload.get("body"))
            conversation = chat.conversation_for_sender(sender, payload.get("conversation_id"), batch.known)
        except InvalidMessage as error:  # Rejected included
            if isinstance(client_message_id, str):
                user_id, reason = sender.user_id, str(error)
                batch.after_commit(lambda: self.broadcaster.error(user_id, client_message_id[:64], reason))
            raise
        return client_message_id, text, conversation

    def _bot_reply(self, conversation: Conversation, posted: Posted, writes: Writes) -> Reply:
        """Store the bot's answer with the message when no network is needed, else ask the worker pool."""
        immediate = self.responder.immediate_answer(posted.message.body)
        if immediate is None:
            return Reply(ask_pool=True)
        text, handoff, rule = immediate
        if posted.created:  # a new message has no answer yet: it is written with the batch
            answer = chat.bot_message(conversation, text)
            conversation.last_message_at = answer.created_at
            writes.add_answer(answer, posted.message, rule)
        else:
            answer = chat.post_bot_message(conversation, text, reply_to=posted.message.id)
            if answer is None:  # answered by the first delivery: show that answer again
                return Reply(chat.bot_reply_to(posted.message.id))
            log_event(logger, "support.bot_answered", conversation_id=conversation.id, rule=rule)
        return Reply(answer, handed_off=chat.hand_off(conversation) if handoff else False)

    def _deliver(self, conversation: Conversation, posted: Posted, reply: Reply) -> None:
        """Emit the message, the bot's answer and a changed state; hand slow answers to the pool."""
        # A redelivered message is emitted again: the first emit may not have happened.
        self.broadcaster.message(conversation, posted.message)
        if reply.answer is not None:
            self.broadcaster.message(conversation, reply.answer)
        if posted.state_changed or reply.handed_off:
            self.broadcaster.conversation(conversation)
        if reply.ask_pool:
            self.responder.submit(conversation.id, posted.message.id)

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
        report = parse_presence_report(body)
        presence.record_presence(report.instance, list(report.admin_ids), report.at)
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

    def _conversation_of(self, inbound: ChatMessage) -> Conversation:
        return chat.readable_conversation(inbound.sender, inbound.payload.get("conversation_id"))
