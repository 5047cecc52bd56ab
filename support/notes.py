"""Private notes: what administrators tell each other about a conversation.

Notes live in their own table and travel only to the administrators' rooms: no
query of the client's pages or API and no emit to a client's room can reach them.
"""

from __future__ import annotations

import sqlalchemy as sa

from common.auth import Identity
from common.messages import has_lone_surrogate
from support.extensions import db
from support.models import MAX_BODY_CHARS, Conversation, ConversationNote, utcnow


def clean_note(raw: str) -> tuple[str, str | None]:
    """Return the trimmed note text and what is wrong with it (None when valid)."""
    body = raw.strip()
    if not body:
        return body, "the note is empty"
    if has_lone_surrogate(body):
        return body, "the note holds a lone surrogate, which is not text"
    if len(body) > MAX_BODY_CHARS:
        return body, f"the note has {len(body)} characters, the limit is {MAX_BODY_CHARS}"
    return body, None


def add_note(conversation: Conversation, author: Identity, body: str) -> ConversationNote:
    """Add a (valid) note by `author` to the conversation; the caller commits."""
    note = ConversationNote(conversation_id=conversation.id, author_id=author.user_id,
                            author_name=author.name, body=body, created_at=utcnow())
    db.session.add(note)
    db.session.flush()
    return note


def notes_of(conversation: Conversation) -> list[ConversationNote]:
    """Return the conversation's notes, oldest first."""
    return list(db.session.scalars(sa.select(ConversationNote)
                                   .where(ConversationNote.conversation_id == conversation.id)
                                   .order_by(ConversationNote.id)))
