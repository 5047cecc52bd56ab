"""Rate limits of sign-in and sign-up stored in the database, so every gunicorn worker
sees the same counts.

Each counted event is one row keyed by a hash of what it is counted against:
an e-mail from one address (failed logins), one address over every e-mail
(failed logins: one address may not try a password on every account), and one
address (sign-ups).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from web.extensions import db
from web.models import LoginAttempt

WINDOW = timedelta(minutes=1)
SIGNUP_WINDOW = timedelta(hours=1)
# Rows older than the longest window count for nothing any more.
LONGEST_WINDOW = max(WINDOW, SIGNUP_WINDOW)


def _hashed(*parts: str) -> str:
    # Hashed: no e-mail or address is stored in this table.
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def attempt_key(email: str, client_address: str) -> str:
    """Return the counter key of one e-mail from one address."""
    return _hashed(str(email or "").strip().lower(), client_address or "-")


def address_attempt_key(client_address: str) -> str:
    """Return the counter key of failed logins from one address, whatever the e-mail."""
    return _hashed("login-from", client_address or "-")


def signup_key(client_address: str) -> str:
    """Return the counter key of sign-ups from one address."""
    return _hashed("signup-from", client_address or "-")


def count(key: str, now: datetime, window: timedelta = WINDOW) -> int:
    """Return how many events `key` had within `window` before `now`."""
    return db.session.scalar(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.key == key, LoginAttempt.attempted_at > now - window)) or 0


def failed_attempts(key: str, now: datetime) -> int:
    """Return how many failed logins `key` had in the last minute."""
    return count(key, now)


def is_limited(key: str, limit: int, now: datetime, window: timedelta = WINDOW) -> bool:
    """Tell whether `key` has used up its `limit` events for this `window`."""
    return count(key, now, window) >= limit


def record(keys: list[str], now: datetime) -> None:
    """Count one event against each key and forget rows past every window (the table stays tiny)."""
    db.session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at <= now - LONGEST_WINDOW))
    db.session.add_all(LoginAttempt(key=key, attempted_at=now) for key in keys)
    db.session.commit()


def record_failure(key: str, now: datetime) -> None:
    """Count one failed login against `key`."""
    record([key], now)
