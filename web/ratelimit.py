"""Login rate limiting stored in the database, so every gunicorn worker sees the same count."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from web.extensions import db
from web.models import LoginAttempt

WINDOW = timedelta(minutes=1)


def attempt_key(email: str, client_address: str) -> str:
    """Return the counter key of one e-mail from one address (hashed: no e-mails in this table)."""
    raw = f"{str(email or '').strip().lower()}|{client_address or '-'}"
    return hashlib.sha256(raw.encode()).hexdigest()


def failed_attempts(key: str, now: datetime) -> int:
    """Return how many failed logins `key` had in the last minute."""
    return db.session.scalar(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.key == key, LoginAttempt.attempted_at > now - WINDOW)) or 0


def is_limited(key: str, limit: int, now: datetime) -> bool:
    """Tell whether `key` has used up its attempts for this minute."""
    return failed_attempts(key, now) >= limit


def record_failure(key: str, now: datetime) -> None:
    """Count one failed login and forget every attempt older than the window (the table stays tiny)."""
    db.session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at <= now - WINDOW))
    db.session.add(LoginAttempt(key=key, attempted_at=now))
    db.session.commit()
