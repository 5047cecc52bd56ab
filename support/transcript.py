"""A conversation's transcript as plain text, for administrators, with times in a stated zone."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from support.extensions import db
from support.models import Conversation, Message

ROLE_LABELS = {"client": "client", "admin": "administrator", "bot": "bot"}


def all_messages(conversation: Conversation) -> list[Message]:
    """Return every message of the conversation, oldest first."""
    return list(db.session.scalars(sa.select(Message).where(Message.conversation_id == conversation.id)
                                   .order_by(Message.id)))


def transcript_lines(conversation: Conversation, messages: Iterable[Message], zone: ZoneInfo):
    """Yield the transcript's lines: a header naming the zone, then one block per message.

    Text is written as it was typed: a plain-text file is never read as markup.
    """
    name = conversation.client_name or f"Client #{conversation.client_id}"
    yield f"Support conversation {conversation.id} with {name} (client #{conversation.client_id})\n"
    yield f"Times are in {zone.key}.\n"
    for message in messages:
        moment = message.created_at.replace(tzinfo=UTC).astimezone(zone)
        sender = message.sender_name or ROLE_LABELS.get(message.sender_role, message.sender_role)
        yield (f"\n[{moment:%Y-%m-%d %H:%M:%S %z}] {sender} ({ROLE_LABELS.get(message.sender_role, '?')}):\n"
               + "".join(f"  {line}\n" for line in message.body.splitlines() or [""]))


def transcript_filename(conversation: Conversation) -> str:
    """Return the download's file name."""
    return f"conversation-{conversation.id}-transcript.txt"
