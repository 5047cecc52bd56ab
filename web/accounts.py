"""Users: search, create, edit and delete, each change with its outbox event."""

from __future__ import annotations

import logging

from argon2 import PasswordHasher
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from common.auth import Identity
from common.logs import log_event
from web.extensions import db
from web.models import ROLE_ADMIN, ROLE_CLIENT, Device, RefreshToken, User, utcnow
from web.outbox import record_event
from web.validation import ConflictingInput, validate_new_user, validate_user_changes

logger = logging.getLogger(__name__)
PAGE_SIZE = 20


class RuleViolation(Exception):
    """A change the rules forbid (e.g. deleting the last administrator); the text says why."""


def search_users(query: str = "", page: int = 1, per_page: int = PAGE_SIZE):
    """Return one page of users whose name or e-mail contains `query`, by name."""
    statement = select(User).options(selectinload(User.devices)).order_by(User.name, User.id)
    query = (query or "").strip()
    if query:
        statement = statement.where(or_(User.name.contains(query, autoescape=True),
                                        User.email.contains(query, autoescape=True)))
    return db.paginate(statement, page=page, per_page=per_page, error_out=False)


def clients() -> list[User]:
    """Return every client, by name (the choices when assigning a device)."""
    return list(db.session.scalars(select(User).where(User.role == ROLE_CLIENT).order_by(User.name)))


def find_by_email(email: str) -> User | None:
    """Return the user with this e-mail (case-insensitive), if any."""
    return db.session.scalar(select(User).where(User.email == (email or "").strip().lower()))


def create_user(data, hasher: PasswordHasher) -> User:
    """Create a user from raw input and record `user.created`; raise ValidationError."""
    fields = validate_new_user(data)
    if find_by_email(fields["email"]) is not None:
        raise ConflictingInput({"email": "a user with this e-mail already exists"})
    user = User(email=fields["email"], name=fields["name"], role=fields["role"],
                password_hash=hasher.hash(fields["password"]))
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError as error:  # the same e-mail registered at the same moment
        db.session.rollback()
        raise ConflictingInput({"email": "a user with this e-mail already exists"}) from error
    record_event("user.created", user=user)
    db.session.commit()
    log_event(logger, "user.created", user_id=user.id, role=user.role)
    return user


def _lock_admin_ids() -> list[int]:
    # Locking the admin rows serialises concurrent demotions and deletions,
    # so two admins cannot remove each other at the same moment.
    return list(db.session.scalars(select(User.id).where(User.role == ROLE_ADMIN).with_for_update()))


def update_user(user: User, data, acting: Identity, hasher: PasswordHasher) -> User:
    """Apply an edit (name, role, new password) and record `user.updated`; raise on bad input."""
    fields = validate_user_changes(data)
    db.session.refresh(user, with_for_update=True)
    if "role" in fields and fields["role"] != user.role:
        if user.id == acting.user_id:
            raise RuleViolation("you cannot change your own role")
        if user.role == ROLE_ADMIN and _lock_admin_ids() == [user.id]:
            raise RuleViolation("the last administrator must stay an administrator")
        owned = db.session.scalar(select(func.count()).select_from(Device).where(Device.owner_id == user.id))
        if fields["role"] == ROLE_ADMIN and owned:
            # Devices belong to clients only; an admin owning meters would fall out of every client view.
            raise RuleViolation(f"this client still has {owned} device(s): unassign them first")
    before = (user.name, user.role)
    user.name = fields.get("name", user.name)
    user.role = fields.get("role", user.role)
    if "password" in fields:
        user.password_hash = hasher.hash(fields["password"])
    if user.role != before[1] or "password" in fields:
        # Tokens carry the role, and whoever held the old password may hold a session.
        _end_sessions(user)
    if (user.name, user.role) != before or "password" in fields:
        record_event("user.updated", user=user)
    db.session.commit()
    log_event(logger, "user.updated", user_id=user.id, by=acting.user_id, password_reset="password" in fields)
    return user


def _end_sessions(user: User) -> None:
    """Make every token issued to `user` so far invalid (the caller records the event)."""
    user.token_version = (user.token_version or 0) + 1
    db.session.execute(update(RefreshToken).where(RefreshToken.user_id == user.id,
                                                  RefreshToken.revoked_at.is_(None))
                       .values(revoked_at=utcnow()))


def end_all_sessions(user: User) -> None:
    """Sign `user` out everywhere: every token issued so far stops working in every service."""
    db.session.refresh(user, with_for_update=True)
    _end_sessions(user)
    record_event("user.updated", user=user)
    db.session.commit()
    log_event(logger, "user.sessions_ended", user_id=user.id, token_version=user.token_version)


def delete_user(user: User, acting: Identity) -> int:
    """Delete a user, unassigning their devices first; return how many were unassigned."""
    if user.id == acting.user_id:
        raise RuleViolation("you cannot delete your own account")
    # Lock the row before writing any event, so per user the sequence follows commit order.
    db.session.refresh(user, with_for_update=True)
    if user.role == ROLE_ADMIN and _lock_admin_ids() == [user.id]:
        raise RuleViolation("the last administrator cannot be deleted")
    devices = list(db.session.scalars(select(Device).where(Device.owner_id == user.id).with_for_update()))
    for device in devices:
        device.owner_id = None
        record_event("device.updated", device=device)
    record_event("user.deleted", user=user)
    user_id = user.id
    db.session.delete(user)
    db.session.commit()
    log_event(logger, "user.deleted", user_id=user_id, by=acting.user_id, unassigned_devices=len(devices))
    return len(devices)


def count_admins() -> int:
    """Return how many administrators exist."""
    return db.session.scalar(select(func.count()).select_from(User).where(User.role == ROLE_ADMIN))
