"""Canned replies: prepared answers with `{placeholders}` filled for the conversation's client.

The placeholders are a fixed list; a text naming any other, or with a stray brace,
is refused with the reason, so every stored text can always be filled.
"""

from __future__ import annotations

import string

import sqlalchemy as sa

from common.auth import Identity
from common.messages import has_lone_surrogate
from support.extensions import db
from support.models import MAX_BODY_CHARS, CannedReply, Conversation

MAX_TITLE_CHARS = 80
PLACEHOLDERS = {
    "client_name": "the client's name",
    "client_first_name": "the client's first name",
    "admin_name": "your name",
}
_FORMATTER = string.Formatter()


def placeholder_list() -> str:
    """Return the allowed placeholders as they are written, for messages and the page."""
    return ", ".join("{" + name + "}" for name in PLACEHOLDERS)


def parse_template(text: str) -> list[tuple[str, str | None]]:
    """Split `text` into (literal, placeholder or None) pieces, or raise ValueError with the reason."""
    try:
        pieces = list(_FORMATTER.parse(text))
    except ValueError as error:  # a single { or }
        raise ValueError("a brace without its pair: write {{ or }} for a brace itself") from error
    for _, name, format_spec, conversion in pieces:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}: use {placeholder_list()}")
        if format_spec or conversion:
            raise ValueError(f"{{{name}}} takes no format: write it as {{{name}}}")
    return [(literal, name) for literal, name, _, _ in pieces]


def validate(title: str, text: str) -> list[str]:
    """Return what is wrong with a canned reply's title and text (nothing when valid)."""
    errors = []
    if has_lone_surrogate(title) or has_lone_surrogate(text):
        return ["the title or text holds a lone surrogate, which is not text"]
    if not title:
        errors.append("a title is required")
    elif len(title) > MAX_TITLE_CHARS:
        errors.append(f"the title has {len(title)} characters, the limit is {MAX_TITLE_CHARS}")
    if not text:
        errors.append("a text is required")
    elif len(text) > MAX_BODY_CHARS:
        errors.append(f"the text has {len(text)} characters, the limit is {MAX_BODY_CHARS}")
    else:
        try:
            parse_template(text)
        except ValueError as error:
            errors.append(str(error))
    return errors


def placeholder_values(conversation: Conversation, admin: Identity) -> dict[str, str]:
    """Return what each placeholder stands for in this conversation, answered by `admin`."""
    client_name = conversation.client_name or "there"
    return {"client_name": client_name, "client_first_name": client_name.split()[0] if client_name.split()
            else client_name, "admin_name": admin.name}


def fill(text: str, values: dict[str, str]) -> str:
    """Return `text` with its placeholders replaced (values are inserted as they are, never parsed)."""
    return "".join(literal + (values[name] if name else "") for literal, name in parse_template(text))


def all_replies() -> list[CannedReply]:
    """Return every canned reply, by title."""
    return list(db.session.scalars(sa.select(CannedReply).order_by(CannedReply.title)))


def save(reply: CannedReply, title: str, text: str) -> list[str]:
    """Give `reply` this title and text when valid and unique; return the errors otherwise."""
    title, text = title.strip(), text.strip()
    errors = validate(title, text)
    taken = db.session.scalar(sa.select(CannedReply.id).where(CannedReply.title == title,
                                                              CannedReply.id != reply.id)) if title else None
    if taken is not None:
        errors.append("another canned reply already has this title")
    if not errors:
        reply.title, reply.text = title, text
    return errors


def filled_for(conversation: Conversation, admin: Identity) -> list[dict]:
    """Return every canned reply with its text filled for this conversation."""
    values = placeholder_values(conversation, admin)
    return [{"id": reply.id, "title": reply.title, "text": fill(reply.text, values)}
            for reply in all_replies()]
