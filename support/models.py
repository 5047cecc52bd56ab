"""The support database: conversations, messages, read state, bot rules, presence.

Times are naive UTC datetimes (the database stores UTC, pages convert).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from common.db import utcnow
from support.extensions import db

STATES = ("bot", "waiting", "assigned", "resolved")
OPEN_STATES = ("bot", "waiting", "assigned")
SENDER_ROLES = ("client", "admin", "bot")
MAX_BODY_CHARS = 2000
# Microseconds keep messages of the same second in order on MariaDB.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def iso_utc(moment: datetime | None) -> str | None:
    """Return a stored naive UTC time as ISO-8601 with its zone."""
    return moment.replace(tzinfo=UTC).isoformat() if moment else None


class Conversation(db.Model):
    """The one conversation of a client with support (reopened when they write again)."""

    __tablename__ = "conversations"

    id = sa.Column(sa.BigInteger, primary_key=True, autoincrement=True)
    # One row per client enforces "at most one open conversation", even under races.
    client_id = sa.Column(sa.Integer, nullable=False, unique=True)
    client_name = sa.Column(sa.String(120), nullable=False, default="")
    client_timezone = sa.Column(sa.String(64), nullable=True)
    state = sa.Column(sa.String(16), nullable=False, default="bot")
    assigned_admin_id = sa.Column(sa.Integer, nullable=True)
    assigned_admin_name = sa.Column(sa.String(120), nullable=True)
    waiting_since = sa.Column(Timestamp, nullable=True)
    last_message_at = sa.Column(Timestamp, nullable=True)
    created_at = sa.Column(Timestamp, nullable=False, default=utcnow)
    updated_at = sa.Column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def row(self) -> dict:
        """Return the inbox row fields (what `chat:conversation` carries)."""
        return {
            "id": self.id,
            "client_id": self.client_id,
            "client_name": self.client_name,
            "state": self.state,
            "assigned_admin_id": self.assigned_admin_id,
            "assigned_admin_name": self.assigned_admin_name,
            "waiting_since": iso_utc(self.waiting_since),
            "last_message_at": iso_utc(self.last_message_at),
        }


class Message(db.Model):
    """One chat message; a retried send (same sender, same client id) is stored once."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("sender_id", "client_message_id", name="uq_messages_sender_client_id"),
        sa.Index("ix_messages_conversation_id_id", "conversation_id", "id"),
    )

    id = sa.Column(sa.BigInteger, primary_key=True, autoincrement=True)
    conversation_id = sa.Column(sa.BigInteger, sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                                nullable=False)
    sender_id = sa.Column(sa.Integer, nullable=True)  # NULL for the bot
    sender_role = sa.Column(sa.String(8), nullable=False)
    sender_name = sa.Column(sa.String(120), nullable=False, default="")
    body = sa.Column(sa.Text, nullable=False)
    client_message_id = sa.Column(sa.String(64), nullable=True)
    created_at = sa.Column(Timestamp, nullable=False, default=utcnow)

    @property
    def is_bot(self) -> bool:
        return self.sender_role == "bot"

    def event(self) -> dict:
        """Return the `chat:message` payload of this message."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "client_message_id": self.client_message_id,
            "sender_id": self.sender_id,
            "sender_role": self.sender_role,
            "sender_name": self.sender_name,
            "body": self.body,
            "created_at": iso_utc(self.created_at),
        }


class ReadState(db.Model):
    """How far one participant has read one conversation."""

    __tablename__ = "read_state"

    conversation_id = sa.Column(sa.BigInteger, sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                                primary_key=True)
    participant_id = sa.Column(sa.Integer, primary_key=True)
    participant_role = sa.Column(sa.String(8), nullable=False)
    last_read_message_id = sa.Column(sa.BigInteger, nullable=False, default=0)
    updated_at = sa.Column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)


class BotRule(db.Model):
    """One bot rule: patterns that trigger it and what it answers or does."""

    __tablename__ = "bot_rules"

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    name = sa.Column(sa.String(80), nullable=False, unique=True)
    priority = sa.Column(sa.Integer, nullable=False, default=0)
    patterns_json = sa.Column("patterns", sa.Text, nullable=False, default="[]")
    answer = sa.Column(sa.Text, nullable=False, default="")
    action = sa.Column(sa.String(32), nullable=False, default="reply")
    enabled = sa.Column(sa.Boolean, nullable=False, default=True)
    updated_at = sa.Column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)

    @property
    def patterns(self) -> list[str]:
        return json.loads(self.patterns_json or "[]")

    @patterns.setter
    def patterns(self, value: list[str]) -> None:
        self.patterns_json = json.dumps(list(value))


class PresenceInstance(db.Model):
    """The administrators connected to one notifier instance, as last reported."""

    __tablename__ = "presence"

    instance = sa.Column(sa.String(120), primary_key=True)
    admin_ids_json = sa.Column("admin_ids", sa.Text, nullable=False, default="[]")
    seen_at = sa.Column(Timestamp, nullable=False, default=utcnow)

    @property
    def admin_ids(self) -> list[int]:
        return json.loads(self.admin_ids_json or "[]")


class CannedReply(db.Model):
    """A prepared answer administrators insert with `/`; its text may hold `{placeholders}`."""

    __tablename__ = "canned_replies"

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    title = sa.Column(sa.String(80), nullable=False, unique=True)
    text = sa.Column(sa.Text, nullable=False)
    updated_at = sa.Column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)


class ConversationNote(db.Model):
    """A private note an administrator left on a conversation; clients never see it."""

    __tablename__ = "conversation_notes"
    __table_args__ = (sa.Index("ix_conversation_notes_conversation_id_id", "conversation_id", "id"),)

    id = sa.Column(sa.BigInteger, primary_key=True, autoincrement=True)
    conversation_id = sa.Column(sa.BigInteger, sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                                nullable=False)
    author_id = sa.Column(sa.Integer, nullable=False)
    author_name = sa.Column(sa.String(120), nullable=False, default="")
    body = sa.Column(sa.Text, nullable=False)
    created_at = sa.Column(Timestamp, nullable=False, default=utcnow)


class Resolution(db.Model):
    """One resolved episode of a conversation (first message to "Resolve"), and the client's rating of it.

    A conversation is reopened by the client's next message, so it can have many;
    the figures of the stats page are computed from these rows.
    """

    __tablename__ = "resolutions"
    __table_args__ = (
        sa.Index("ix_resolutions_conversation_id_resolved_at", "conversation_id", "resolved_at"),
        sa.Index("ix_resolutions_resolved_at", "resolved_at"),
        sa.Index("ix_resolutions_opened_at", "opened_at"),
    )

    id = sa.Column(sa.BigInteger, primary_key=True, autoincrement=True)
    conversation_id = sa.Column(sa.BigInteger, sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                                nullable=False)
    resolved_by_id = sa.Column(sa.Integer, nullable=True)
    resolved_by_name = sa.Column(sa.String(120), nullable=True)
    opened_at = sa.Column(Timestamp, nullable=False)
    first_response_at = sa.Column(Timestamp, nullable=True)  # the first administrator's message
    resolved_at = sa.Column(Timestamp, nullable=False)
    bot_only = sa.Column(sa.Boolean, nullable=False)  # no administrator wrote in the episode
    rating = sa.Column(sa.SmallInteger, nullable=True)
    rating_comment = sa.Column(sa.Text, nullable=True)
    rated_at = sa.Column(Timestamp, nullable=True)
