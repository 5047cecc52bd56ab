"""Assignment to a named administrator, and the inbox's views: mine, unassigned, all, resolved, search."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import match

from common.auth import Identity
from support import chat
from support.extensions import db
from support.models import Conversation, Message, ReadState
from support.users import KnownUser

VIEWS = {
    "mine": "Mine",
    "unassigned": "Unassigned",
    "all": "All",  # all open ones
    "resolved": "Resolved",
}
DEFAULT_VIEW = "all"
PAGE_SIZE = 25
MAX_QUERY_CHARS = 100
# The full-text index holds words of 3 to 84 letters or digits (innodb_ft_min/max_token_size)
# and skips InnoDB's stopwords: a required term it never holds would match nothing.
_INDEXED_WORD = re.compile(r"[^\W_]{3,84}")
STOPWORDS = frozenset(
    "about are com for from how that the this was what when where who will with und www".split())
MAX_SEARCH_WORDS = 8


@dataclass(frozen=True)
class InboxPage:
    """One page of the inbox: (conversation, this admin's unread count) rows, and what was asked."""

    rows: list[tuple[Conversation, int]]
    view: str
    query: str
    page: int
    has_more: bool


def known_admins() -> list[KnownUser]:
    """Return the administrators support knows of (from the portal's user events), by name."""
    return list(db.session.scalars(sa.select(KnownUser).where(KnownUser.role == "admin",
                                                              KnownUser.deleted.is_(False))
                                   .order_by(KnownUser.name, KnownUser.user_id)))


def remember_admin(admin: Identity) -> None:
    """Record that this user is an administrator, when support knew them from before roles were kept.

    Their verified token says so; from then on colleagues can assign conversations to them.
    The caller commits.
    """
    db.session.execute(sa.update(KnownUser).values(role="admin")
                       .where(KnownUser.user_id == admin.user_id, KnownUser.role.is_(None)))


def assign_to(conversation: Conversation, admin_id: int) -> Identity:
    """Assign the conversation to the known administrator `admin_id`; raise LookupError if there is none."""
    admin = db.session.get(KnownUser, admin_id)
    if admin is None or admin.role != "admin" or admin.deleted:
        raise LookupError("no such administrator")
    assignee = Identity(admin.user_id, "admin", admin.name)
    chat.assign(conversation, assignee)
    return assignee


def clean_view(raw: str | None) -> str:
    """Return the inbox view asked for, or the default one."""
    return raw if raw in VIEWS else DEFAULT_VIEW


def like_pattern(text: str) -> str:
    """Return a LIKE pattern matching `text` anywhere, its own % _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fulltext_terms(text: str) -> str | None:
    """Return a boolean-mode query requiring every searchable word of `text` as a prefix, or None.

    Only letters and digits reach it: none of the mode's operators can come from the text.
    """
    words = [word for word in _INDEXED_WORD.findall(text) if word.lower() not in STOPWORDS]
    return " ".join(f"+{word}*" for word in words[:MAX_SEARCH_WORDS]) or None


def _view_condition(view: str, admin: Identity):
    return {
        "mine": sa.and_(Conversation.assigned_admin_id == admin.user_id, Conversation.state == "assigned"),
        "unassigned": Conversation.state.in_(("bot", "waiting")),
        "all": Conversation.state != "resolved",
        "resolved": Conversation.state == "resolved",
    }[view]


def _unread_counts(admin: Identity, conversation_ids: list[int]) -> dict[int, int]:
    """Return this admin's unread client messages per conversation (only those with any)."""
    if not conversation_ids:
        return {}
    read_up_to = sa.func.coalesce(ReadState.last_read_message_id, 0)
    query = (sa.select(Message.conversation_id, sa.func.count(Message.id))
             .outerjoin(ReadState, sa.and_(ReadState.conversation_id == Message.conversation_id,
                                           ReadState.participant_id == admin.user_id))
             .where(Message.conversation_id.in_(conversation_ids), Message.sender_role == "client",
                    Message.id > read_up_to)
             .group_by(Message.conversation_id))
    return dict(db.session.execute(query).all())


def inbox_page(admin: Identity, view: str, query: str = "", page: int = 1) -> InboxPage:
    """Return a page of the inbox in `view`, searched by client name and message text when `query`.

    Waiting conversations come first (longest waiting on top), then by latest activity.
    """
    query, page = query.strip()[:MAX_QUERY_CHARS], max(1, page)
    select = (sa.select(Conversation)
              .where(Conversation.last_message_at.is_not(None), _view_condition(view, admin)))
    if query:
        # Client names by any part; messages by their words (the full-text index, migration 0005).
        by_name = Conversation.client_name.like(like_pattern(query), escape="\\")
        terms = fulltext_terms(query)
        in_messages = Conversation.id.in_(sa.select(Message.conversation_id).where(
            match(Message.body, against=terms).in_boolean_mode())) if terms else sa.false()
        select = select.where(sa.or_(by_name, in_messages))
    select = (select.order_by(sa.case((Conversation.state == "waiting", 0), else_=1),
                              Conversation.waiting_since.asc(), Conversation.last_message_at.desc(),
                              Conversation.id.desc())
              .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1))
    conversations = list(db.session.scalars(select))
    shown = conversations[:PAGE_SIZE]
    unread = _unread_counts(admin, [conversation.id for conversation in shown])
    return InboxPage([(conversation, unread.get(conversation.id, 0)) for conversation in shown],
                     view, query, page, has_more=len(conversations) > PAGE_SIZE)
