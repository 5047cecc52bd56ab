"""Support follows users: their names, deletions and ended sessions, from the portal's events.

Support keeps its own copy of what it needs to know about each user (a row per
user in `known_users`), filled from `support.events`, a queue bound to the
portal's `user.*` events with one active consumer, so each user's events come
in order (`last_sequence` still ignores an older one redelivered):

- `user.updated` renames the user's conversation and messages, and records
  the token version, below which support refuses the user's tokens;
- `user.deleted` closes the client's conversation, keeps the transcript for
  administrators under `DELETED_USER_NAME`, and marks the user deleted: their
  tokens are refused and further messages dead-lettered.

The consumer runs on a thread of its own, with its own connection, beside the
inbound chat consumer in `python -m support consumer`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import pika
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import DBAPIError

from common.amqp import connect, dead_letter, internal_error_reason, run_with_reconnect
from common.auth import Identity, KnownSessions
from common.db import blames_the_message, refusal_reason
from common.logs import log_event
from common.messages import ChatMessage, Event, InvalidMessage, parse_event
from common.realtime import ADMINS_ROOM, user_room
from common.settings import Settings
from common.topology import SUPPORT_EVENTS_QUEUE
from support import chat
from support.extensions import db
from support.models import Conversation, Message, Timestamp, utcnow

logger = logging.getLogger(__name__)

DELETED_USER_NAME = "deleted user"
DELETED_SENDER = "the sender's account was deleted"
IDLE_TIMEOUT_SECONDS = 1.0


class KnownUser(db.Model):
    """What support was told of one user by the portal's newest event about them."""

    __tablename__ = "known_users"

    user_id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    name = sa.Column(sa.String(120), nullable=False, default="")
    role = sa.Column(sa.String(8), nullable=True)  # NULL: known from before roles were kept
    token_version = sa.Column(sa.Integer, nullable=False, default=0)
    deleted = sa.Column(sa.Boolean, nullable=False, default=False)
    last_sequence = sa.Column(sa.BigInteger, nullable=False)
    updated_at = sa.Column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)


def known_sessions(user_id: int) -> KnownSessions | None:
    """Return what support knows of a user's sessions (the lookup of its HTTP token checks)."""
    row = db.session.get(KnownUser, user_id)
    if row is None:
        return None
    return KnownSessions(version=row.token_version, deleted=row.deleted)


def client_identity(conversation: Conversation) -> Identity:
    """Return the identity the bot uses to read a client's data: tokens of their current version."""
    known = known_sessions(conversation.client_id) or KnownSessions()
    return Identity(conversation.client_id, "client", conversation.client_name, token_version=known.version)


def with_known_senders(parsed: dict[bytes, ChatMessage]) -> tuple[dict[bytes, ChatMessage], set[int]]:
    """Give each sender the name of the newest event about them; return also the deleted senders.

    A token keeps the name it was issued with for its whole life: after a rename
    it must not bring the old name back.
    """
    ids = {inbound.sender.user_id for inbound in parsed.values()}
    if not ids:
        return parsed, set()
    rows = db.session.execute(sa.select(KnownUser.user_id, KnownUser.name, KnownUser.deleted)
                              .where(KnownUser.user_id.in_(ids))).all()
    names = {row.user_id: row.name for row in rows if not row.deleted}
    deleted = {row.user_id for row in rows if row.deleted}
    renamed = {body: replace(inbound, sender=replace(inbound.sender, name=names[inbound.sender.user_id]))
               if names.get(inbound.sender.user_id) not in (None, inbound.sender.name) else inbound
               for body, inbound in parsed.items()}
    return renamed, deleted


def apply_user_event(event: Event) -> list[Conversation]:
    """Apply one user event in the current session (the caller commits); return the conversations changed.

    An event not newer than the last one applied for its user changes nothing.
    """
    user = event.user
    row = db.session.get(KnownUser, user.id, with_for_update=True)
    if row is not None and row.last_sequence >= event.sequence:
        return []
    deleted = event.type == "user.deleted"
    if row is None:
        row = KnownUser(user_id=user.id, last_sequence=event.sequence)
        db.session.add(row)
    # A deletion keeps the version: every token of the user is refused anyway.
    row.name, row.deleted, row.last_sequence = user.name[:120], deleted, event.sequence
    row.role = user.role  # the administrators a conversation can be assigned to
    row.token_version = max(row.token_version or 0, user.token_version)
    name = DELETED_USER_NAME if deleted else user.name[:120]
    # Found by the unique key (sender_id, client_message_id); the bot's id is never a user's.
    db.session.execute(sa.update(Message).where(Message.sender_id == user.id).values(sender_name=name))
    changed = list(db.session.scalars(
        sa.select(Conversation).where(sa.or_(Conversation.client_id == user.id,
                                             Conversation.assigned_admin_id == user.id))
        .with_for_update()))
    for conversation in changed:
        if conversation.client_id == user.id:
            conversation.client_name = name
            if deleted:
                chat.resolve(conversation)
        if conversation.assigned_admin_id == user.id:
            conversation.assigned_admin_name = name
    return changed


class UserEventsConsumer:
    """Consume `support.events` on a thread of its own, one event at a time, acked after commit."""

    def __init__(self, settings: Settings, app: Flask, broadcaster=None):
        self.settings = settings
        self.app = app
        self.broadcaster = broadcaster
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="user-events", daemon=True)

    def start(self) -> None:
        """Start consuming on the background thread."""
        self.thread.start()

    def stop(self) -> None:
        """Leave after the current event."""
        self.stopping.set()

    def run(self) -> None:
        """Consume until stopped, reconnecting after broker failures."""
        run_with_reconnect(self._consume, SUPPORT_EVENTS_QUEUE, should_stop=self.stopping.is_set)

    def _consume(self) -> None:
        connection = connect(self.settings)
        try:
            channel = connection.channel()
            # Dead letters must be confirmed before the original is acked.
            channel.confirm_delivery()
            channel.basic_qos(prefetch_count=1)  # in order, one at a time
            log_event(logger, "support.user_events_consuming", queue=SUPPORT_EVENTS_QUEUE)
            for method, properties, body in channel.consume(SUPPORT_EVENTS_QUEUE,
                                                            inactivity_timeout=IDLE_TIMEOUT_SECONDS):
                if method is not None:
                    self._handle(channel, method, properties, body)
                    channel.basic_ack(method.delivery_tag)
                if self.stopping.is_set():
                    channel.cancel()
                    return
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass

    def _handle(self, channel, method, properties, body: bytes) -> None:
        """Apply one event, or dead-letter it with the reason it can never be applied."""
        try:
            self._apply(body)
        except InvalidMessage as error:
            self._dead_letter(channel, method, properties, body, str(error))
        except DBAPIError as error:
            if not blames_the_message(error):
                # The database is away: the connection closes and the event comes back.
                raise ConnectionError(f"applying a user event failed: {type(error).__name__}") from error
            self._dead_letter(channel, method, properties, body, refusal_reason(error))
        except Exception as error:  # noqa: BLE001 - last resort: one event must not stall the rest
            logger.error("support.user_event_crashed", exc_info=True)
            self._dead_letter(channel, method, properties, body, internal_error_reason(error))

    def _apply(self, body: bytes) -> None:
        event = parse_event(body)
        if event.user is None:
            raise InvalidMessage(f"{event.type} is not a user event")
        with self.app.app_context():
            try:
                changed = apply_user_event(event)
                db.session.commit()
                rows = [conversation.row() for conversation in changed]
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()
        log_event(logger, "support.user_event_applied", type=event.type, sequence=event.sequence,
                  user_id=event.user.id, conversations=len(rows))
        if self.broadcaster is not None:
            for row in rows:  # the inboxes show the new name or the closed conversation at once
                self.broadcaster.emit("chat:conversation", row, [ADMINS_ROOM, user_room(row["client_id"])])

    @staticmethod
    def _dead_letter(channel, method, properties, body: bytes, reason: str) -> None:
        dead_letter(channel, SUPPORT_EVENTS_QUEUE, method.routing_key, body, reason, properties)
        log_event(logger, "support.user_event_dead_lettered", level=logging.WARNING,
                  message_id=properties.message_id, reason=reason[:200])
