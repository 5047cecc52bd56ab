"""Resolutions and ratings: each "Resolve" closes an episode, which its client may rate once.

An episode runs from the first message after the previous resolution to the
"Resolve"; its row keeps what the stats page needs (when it opened, when an
administrator first answered, whether the bot alone answered) and the rating.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from common.auth import Identity
from common.messages import has_lone_surrogate
from support.extensions import db
from support.models import Conversation, Message, Resolution, utcnow

MAX_COMMENT_CHARS = 1000
STARS = (1, 2, 3, 4, 5)


class RatingRefused(ValueError):
    """A rating that is invalid or not allowed; the text is the reason."""

    status = 422


class AlreadyRated(RatingRefused):
    """A second rating of the same resolution."""

    status = 409


@dataclass(frozen=True)
class RatingForm:
    """A client's valid rating: 1-5 stars and an optional comment."""

    stars: int
    comment: str | None


def latest_resolution(conversation_id: int) -> Resolution | None:
    """Return the conversation's most recent resolution, or None."""
    return db.session.scalars(sa.select(Resolution).where(Resolution.conversation_id == conversation_id)
                              .order_by(Resolution.resolved_at.desc(), Resolution.id.desc()).limit(1)).first()


def episode_messages(conversation: Conversation):
    """Return the select of the messages of the conversation's current episode."""
    previous = latest_resolution(conversation.id)
    query = sa.select(Message).where(Message.conversation_id == conversation.id)
    if previous is not None:
        query = query.where(Message.created_at > previous.resolved_at)
    return query


def record_resolution(conversation: Conversation, admin: Identity | None) -> Resolution | None:
    """Store the episode `conversation` is being resolved from; None when it had no message."""
    episode = episode_messages(conversation).subquery()
    opened_at, first_response_at, admin_messages = db.session.execute(sa.select(
        sa.func.min(episode.c.created_at),
        sa.func.min(sa.case((episode.c.sender_role == "admin", episode.c.created_at))),
        sa.func.count(sa.case((episode.c.sender_role == "admin", 1))))).one()
    if opened_at is None:
        return None
    resolution = Resolution(conversation_id=conversation.id, opened_at=opened_at,
                            first_response_at=first_response_at, resolved_at=utcnow(),
                            bot_only=not admin_messages,
                            resolved_by_id=admin.user_id if admin else None,
                            resolved_by_name=admin.name if admin else None)
    db.session.add(resolution)
    return resolution


def pending_rating(conversation: Conversation | None) -> Resolution | None:
    """Return the resolution the client is asked to rate: the latest, unrated, while still resolved."""
    if conversation is None or conversation.state != "resolved":
        return None
    latest = latest_resolution(conversation.id)
    return latest if latest is not None and latest.rated_at is None else None


def parse_rating(stars, comment) -> RatingForm:
    """Return the rating of the form's raw `stars` and `comment`, or raise RatingRefused."""
    if not isinstance(stars, str) or stars.strip() not in {str(star) for star in STARS}:
        raise RatingRefused("choose from 1 to 5 stars")
    comment = comment.strip() if isinstance(comment, str) else ""
    if has_lone_surrogate(comment):
        raise RatingRefused("the comment holds a lone surrogate, which is not text")
    if len(comment) > MAX_COMMENT_CHARS:
        raise RatingRefused(f"the comment has {len(comment)} characters, the limit is {MAX_COMMENT_CHARS}")
    return RatingForm(int(stars), comment or None)


def rate(conversation: Conversation, resolution_id: int, form: RatingForm) -> Resolution:
    """Store the client's rating of one of their resolutions, once; raise RatingRefused otherwise."""
    resolution = db.session.get(Resolution, resolution_id, with_for_update=True)
    if resolution is None or resolution.conversation_id != conversation.id:
        raise RatingRefused("there is no such resolved conversation to rate")
    if resolution.rated_at is not None:
        raise AlreadyRated("this conversation was already rated")
    resolution.rating, resolution.rating_comment, resolution.rated_at = form.stars, form.comment, utcnow()
    return resolution


def resolutions_of(conversation: Conversation, limit: int = 20) -> list[Resolution]:
    """Return the conversation's latest resolutions, newest first (the admins see their ratings)."""
    return list(db.session.scalars(sa.select(Resolution).where(Resolution.conversation_id == conversation.id)
                                   .order_by(Resolution.resolved_at.desc()).limit(limit)))
