"""Conversations and messages: who may do what, and the state changes.

Plain functions on the database session; the caller commits. `Rejected` means
the input is invalid or not allowed; the consumer dead-letters it with the reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import IntegrityError

from common.auth import Identity
from common.messages import (
    CHAT_MESSAGE_MAX_BYTES,
    MAX_ROW_ID,
    ChatMessage,
    InvalidMessage,
    has_lone_surrogate,
    parse_chat_message,
)
from support.extensions import db
from support.models import MAX_BODY_CHARS, Conversation, Message, ReadState, utcnow

BOT_SENDER_ID = 0  # user ids start at 1; the bot's replies are unique per (0, "reply-to:<id>")
BOT_NAME = "EMS assistant"
HISTORY_PAGE = 30
MAX_HISTORY_PAGE = 100
MAX_INBOUND_BYTES = CHAT_MESSAGE_MAX_BYTES
_CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class Rejected(InvalidMessage):
    """An inbound chat message that is invalid or not allowed; the text is the reason."""


@dataclass(frozen=True)
class Posted:
    """The outcome of posting: the stored message, and whether this call stored it."""

    message: Message
    conversation: Conversation
    created: bool
    state_changed: bool


@dataclass
class Prefetched:
    """What a batch of messages looked up at once: its conversations, locked, and the sends stored."""

    by_client: dict[int, Conversation] = field(default_factory=dict)
    by_id: dict[int, Conversation] = field(default_factory=dict)
    # (sender id, client message id) -> the message, stored before or earlier in the batch.
    stored: dict[tuple[int, str], Message] = field(default_factory=dict)

    def add(self, conversations) -> None:
        for conversation in conversations:
            self.by_id[conversation.id] = conversation
            self.by_client[conversation.client_id] = conversation


def prefetch(clients: dict[int, str], conversation_ids: set[int], sends: set[tuple[int, str]]) -> Prefetched:
    """Lock the conversations of these clients (created on first contact) and of these ids.

    `clients` maps client ids to names; `sends` are the (sender id, client message id)
    to look up among the stored messages. A few statements for a whole batch, however
    many messages and new clients it has. Missing rows are never read with a lock: the
    gap lock that takes would make two consumers creating conversations deadlock.
    """
    found = Prefetched()
    ids, new_clients = set(conversation_ids), []
    if clients:
        existing = dict(db.session.execute(sa.select(Conversation.client_id, Conversation.id)
                                           .where(Conversation.client_id.in_(clients))).all())
        ids.update(existing.values())
        new_clients = sorted(set(clients) - set(existing))
        if new_clients:
            _create_conversations({client_id: clients[client_id] for client_id in new_clients})
    if ids:
        query = sa.select(Conversation).where(Conversation.id.in_(ids)).order_by(Conversation.id)
        found.add(db.session.scalars(query.with_for_update()))
    if new_clients:
        # A locking read sees the rows another consumer created a moment ago, too.
        query = sa.select(Conversation).where(Conversation.client_id.in_(new_clients))
        found.add(db.session.scalars(query.with_for_update()))
    if sends:
        query = sa.select(Message).where(sa.tuple_(Message.sender_id, Message.client_message_id).in_(sends))
        found.stored = {(m.sender_id, m.client_message_id): m for m in db.session.scalars(query)}
    return found


def _create_conversations(clients: dict[int, str]) -> None:
    """Insert a conversation for each of these clients (id -> name) that still has none."""
    now = utcnow()
    db.session.execute(_insert_conversations(), [
        {"client_id": client_id, "client_name": name, "state": "bot", "created_at": now, "updated_at": now}
        for client_id, name in clients.items()])


@functools.cache
def _insert_conversations():
    """Return the insert of new conversations, built once; IGNORE skips those created meanwhile."""
    return mysql_insert(Conversation.__table__).prefix_with("IGNORE")


def parse_inbound(body: bytes) -> ChatMessage:
    """Parse a chat message from the notifier (`common.messages.ChatMessage`), or raise Rejected."""
    try:
        return parse_chat_message(body)
    except InvalidMessage as error:
        raise Rejected(str(error)) from error


def clean_body(raw) -> str:
    """Return the trimmed message text, or raise Rejected when empty or too long."""
    if not isinstance(raw, str):
        raise Rejected("body must be a string")
    body = raw.strip()
    if not body:
        raise Rejected("body is empty")
    if has_lone_surrogate(body):
        raise Rejected("body holds a lone surrogate, which is not text")
    if len(body) > MAX_BODY_CHARS:
        raise Rejected(f"body has {len(body)} characters, the limit is {MAX_BODY_CHARS}")
    return body


def clean_client_message_id(raw) -> str:
    """Return the browser-generated message id, or raise Rejected."""
    # fullmatch: `$` of match would also take a trailing newline.
    if not isinstance(raw, str) or not _CLIENT_MESSAGE_ID.fullmatch(raw):
        raise Rejected("client_message_id must be 1-64 letters, digits or _.:-")
    return raw


def positive_id(raw, field: str) -> int:
    """Return a positive integer id from the payload, or raise Rejected."""
    # isdigit() alone also takes "²" and "٣", and int() refuses over 4,300 digits.
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_ROW_ID)):
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_ROW_ID:
        raise Rejected(f"{field} must be a positive integer")
    return raw


def can_access(identity: Identity, conversation: Conversation) -> bool:
    """Tell whether `identity` may read and write `conversation`."""
    return identity.is_admin or conversation.client_id == identity.user_id


def conversation_of_client(client_id: int) -> Conversation | None:
    """Return the client's conversation (there is at most one), or None."""
    return db.session.scalars(sa.select(Conversation).where(Conversation.client_id == client_id)).first()


def conversation_for_client(client: Identity, known: Prefetched | None = None) -> Conversation:
    """Return the client's conversation, locked for update, creating it on first contact."""
    known = known or prefetch({client.user_id: client.name}, set(), set())
    conversation = known.by_client[client.user_id]
    if client.name and conversation.client_name != client.name:
        conversation.client_name = client.name
    return conversation


def conversation_for_sender(sender: Identity, conversation_id,
                            known: Prefetched | None = None) -> Conversation:
    """Return the conversation `sender` addresses, locked, or raise Rejected if not theirs."""
    if sender.is_admin:
        conversation_id = positive_id(conversation_id, "conversation_id")
        conversation = known.by_id.get(conversation_id) if known else None
        if conversation is None:
            conversation = db.session.get(Conversation, conversation_id, with_for_update=True)
        if conversation is None:
            raise Rejected("conversation does not exist")
        return conversation
    conversation = conversation_for_client(sender, known)
    if conversation_id is not None and str(conversation_id) != str(conversation.id):
        raise Rejected("sender is not a participant of this conversation")
    return conversation


def readable_conversation(identity: Identity, conversation_id) -> Conversation:
    """Return an existing conversation `identity` may see, or raise Rejected."""
    conversation = db.session.get(Conversation, positive_id(conversation_id, "conversation_id"))
    if conversation is None or not can_access(identity, conversation):
        raise Rejected("sender is not a participant of this conversation")
    return conversation


def _find_message(sender_id: int, client_message_id: str) -> Message | None:
    return db.session.scalars(sa.select(Message).where(
        Message.sender_id == sender_id, Message.client_message_id == client_message_id)).first()


def _advance_read(conversation: Conversation, reader: Identity, message_id: int) -> bool:
    state = db.session.get(ReadState, (conversation.id, reader.user_id), with_for_update=True)
    if state is None:
        try:
            with db.session.begin_nested():
                db.session.add(ReadState(conversation_id=conversation.id, participant_id=reader.user_id,
                                         participant_role=reader.role, last_read_message_id=message_id))
            return True
        except IntegrityError:
            state = db.session.get(ReadState, (conversation.id, reader.user_id), with_for_update=True)
    if state.last_read_message_id >= message_id:
        return False
    state.last_read_message_id = message_id
    return True


def note_own_messages(latest_own: dict[tuple[int, int, str], int]) -> None:
    """Record that senders have read up to what they wrote: {(conversation, user, role): message id}.

    Replying means having read the conversation, so this moves the sender's read
    mark (never backwards). One multi-row upsert for a whole batch of messages.
    """
    if not latest_own:
        return
    now = utcnow()
    rows = [{"conversation_id": conversation_id, "participant_id": user_id, "participant_role": role,
             "last_read_message_id": message_id, "updated_at": now}
            for (conversation_id, user_id, role), message_id in sorted(latest_own.items())]
    db.session.execute(_read_mark_upsert(), rows)


@functools.cache
def _read_mark_upsert():
    """Return the upsert of read marks, built once (it runs with every batch of messages)."""
    insert = mysql_insert(ReadState.__table__)
    return insert.on_duplicate_key_update(
        last_read_message_id=sa.func.greatest(ReadState.__table__.c.last_read_message_id,
                                              insert.inserted.last_read_message_id),
        updated_at=insert.inserted.updated_at)


def post_message(sender: Identity, conversation: Conversation, body: str, client_message_id: str,
                 stored: Mapping[tuple[int, str], Message]) -> Posted:
    """Add a client's or admin's message unless `stored` has it; reopen or take the conversation as needed.

    `stored` holds the sends known to be stored, by (sender id, client message id):
    the caller notes the new one (it gets its id at the batch's next flush) and
    records the sender's read mark (`note_own_messages`), once per batch.
    """
    key = (sender.user_id, client_message_id)
    existing = stored.get(key)
    if existing is not None:
        return Posted(existing, conversation, created=False, state_changed=False)
    before = (conversation.state, conversation.assigned_admin_id)
    now = utcnow()
    if sender.is_admin:
        if conversation.state != "assigned" or conversation.assigned_admin_id is None:
            assign(conversation, sender)
    elif conversation.state == "resolved":
        # A new question after "resolved" starts over with the bot.
        conversation.state = "bot"
        conversation.assigned_admin_id = conversation.assigned_admin_name = None
        conversation.waiting_since = None
    message = Message(conversation_id=conversation.id, sender_id=sender.user_id, sender_role=sender.role,
                      sender_name=sender.name, body=body, client_message_id=client_message_id,
                      created_at=now)
    db.session.add(message)
    # A send stored before but not in `stored` breaks the unique key at the flush:
    # the caller rolls back and runs the batch again with the look-up.
    conversation.last_message_at = now
    return Posted(message, conversation, created=True,
                  state_changed=before != (conversation.state, conversation.assigned_admin_id))


def bot_reply_marker(message_id: int) -> str:
    """Return the client id of the bot's reply to message `message_id` (one reply each)."""
    return f"reply-to:{message_id}"


def bot_reply_exists(message_id: int) -> bool:
    """Tell whether the bot already answered message `message_id`."""
    return _find_message(BOT_SENDER_ID, bot_reply_marker(message_id)) is not None


def bot_message(conversation: Conversation, body: str, reply_to: int | None = None) -> Message:
    """Return a new bot message in `conversation`, not yet added to the session."""
    now = utcnow()
    return Message(conversation_id=conversation.id, sender_id=BOT_SENDER_ID, sender_role="bot",
                   sender_name=BOT_NAME, body=body[:MAX_BODY_CHARS],
                   client_message_id=bot_reply_marker(reply_to) if reply_to is not None else None,
                   created_at=now)


def post_bot_message(conversation: Conversation, body: str, reply_to: int | None = None) -> Message | None:
    """Store a bot message (once per client message answered); None if already answered."""
    message = bot_message(conversation, body, reply_to)
    try:
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:
        return None
    conversation.last_message_at = message.created_at
    return message


def bot_reply_to(message_id: int) -> Message | None:
    """Return the bot's reply to message `message_id`, if any."""
    return _find_message(BOT_SENDER_ID, bot_reply_marker(message_id))


def hand_off(conversation: Conversation) -> bool:
    """Hand the conversation to the administrators (state waiting); tell whether it changed."""
    if conversation.state in ("waiting", "assigned"):
        return False
    conversation.state = "waiting"
    conversation.waiting_since = utcnow()
    conversation.assigned_admin_id = conversation.assigned_admin_name = None
    return True


def assign(conversation: Conversation, admin: Identity) -> None:
    """Make `admin` the conversation's administrator."""
    conversation.state = "assigned"
    conversation.assigned_admin_id = admin.user_id
    conversation.assigned_admin_name = admin.name
    conversation.waiting_since = None


def resolve(conversation: Conversation) -> None:
    """Close the conversation (the client's next message reopens it)."""
    conversation.state = "resolved"
    conversation.waiting_since = None


def mark_read(reader: Identity, conversation: Conversation, message_id: int) -> bool:
    """Record that `reader` has read up to `message_id`; tell whether that moved forward."""
    belongs = db.session.scalar(sa.select(sa.func.count()).select_from(Message).where(
        Message.id == message_id, Message.conversation_id == conversation.id))
    if not belongs:
        raise Rejected("message is not part of this conversation")
    return _advance_read(conversation, reader, message_id)


def history(conversation: Conversation, before: int | None = None,
            limit: int = HISTORY_PAGE) -> tuple[list[Message], bool]:
    """Return up to `limit` messages before id `before` (oldest first) and whether more exist."""
    limit = max(1, min(limit, MAX_HISTORY_PAGE))
    query = sa.select(Message).where(Message.conversation_id == conversation.id)
    if before is not None:
        query = query.where(Message.id < before)
    rows = list(db.session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)))
    return list(reversed(rows[:limit])), len(rows) > limit


def _other_side(identity: Identity):
    return ("client",) if identity.is_admin else ("admin", "bot")


def last_read(conversation_id: int, participant_id: int) -> int:
    """Return the last message id `participant_id` has read in the conversation (0: none)."""
    state = db.session.get(ReadState, (conversation_id, participant_id))
    return state.last_read_message_id if state else 0


def unread_count(conversation: Conversation, identity: Identity) -> int:
    """Return how many messages of the other party `identity` has not read."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Message).where(
        Message.conversation_id == conversation.id,
        Message.sender_role.in_(_other_side(identity)),
        Message.id > last_read(conversation.id, identity.user_id))) or 0


def seen_up_to(conversation: Conversation, identity: Identity) -> int:
    """Return up to which message the other party has read (for "Seen" receipts)."""
    other_role = "client" if identity.is_admin else "admin"
    return db.session.scalar(sa.select(sa.func.max(ReadState.last_read_message_id)).where(
        ReadState.conversation_id == conversation.id, ReadState.participant_role == other_role)) or 0


def inbox(admin: Identity, include_resolved: bool = False) -> list[tuple[Conversation, int]]:
    """Return the conversations for the admin inbox with this admin's unread counts.

    Waiting ones first (longest waiting on top), then by latest activity.
    """
    reads = sa.select(ReadState.conversation_id, ReadState.last_read_message_id).where(
        ReadState.participant_id == admin.user_id).subquery()
    unread = (
        sa.select(sa.func.count(Message.id))
        .where(Message.conversation_id == Conversation.id, Message.sender_role == "client",
               Message.id > sa.func.coalesce(reads.c.last_read_message_id, 0))
        .correlate(Conversation, reads)
        .scalar_subquery()
    )
    query = (sa.select(Conversation, unread)
             .outerjoin(reads, reads.c.conversation_id == Conversation.id)
             .where(Conversation.last_message_at.is_not(None)))
    if not include_resolved:
        query = query.where(Conversation.state != "resolved")
    query = query.order_by(sa.case((Conversation.state == "waiting", 0), else_=1),
                           Conversation.waiting_since.asc(), Conversation.last_message_at.desc()).limit(200)
    return [(conversation, count or 0) for conversation, count in db.session.execute(query)]
