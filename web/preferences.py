"""A user's own account: name, time zone, browser notifications and password (the Profile page).

The time zone is detected by the browser (static/js/timezone.js fills a hidden
field of the sign-in and sign-up forms) and stored at the first sign-in; the
user can change it on the Profile page. It travels to every service in the
access token's `tz` claim (web.sessions), so the monitor API and support read
the viewer's zone from the verified token, not from anything the browser sends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from zoneinfo import available_timezones

from argon2 import PasswordHasher

from common.logs import log_event
from web.accounts import end_all_sessions
from web.extensions import db
from web.models import User
from web.outbox import record_event
from web.sessions import authenticate
from web.validation import ValidationError, clean_password, clean_text

logger = logging.getLogger(__name__)
TIMEZONE_MAX = 64


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """Return every IANA zone name this machine knows, sorted (the Profile page's choices)."""
    # Scanning the zone database takes a third of a second: once per process.
    return tuple(sorted(available_timezones()))


def valid_timezone(name: object) -> str | None:
    """Return `name` if it is a known IANA zone name, else None."""
    if not isinstance(name, str) or not 0 < len(name) <= TIMEZONE_MAX:
        return None
    return name if name in _known_names() else None


@lru_cache(maxsize=1)
def _known_names() -> frozenset[str]:
    return frozenset(timezone_names())


def remember_detected_timezone(user: User, detected: object) -> None:
    """Store the browser's zone on a user who has none yet (the first sign-in); the caller commits."""
    if user.timezone is None and (zone := valid_timezone(detected)):
        user.timezone = zone


def update_preferences(user: User, data: Mapping) -> User:
    """Apply the Profile form (name, time zone, browser notifications); raise ValidationError."""
    errors, name = {}, user.name
    try:
        name = clean_text(data.get("name"), "name", 100)
    except ValueError as error:
        errors["name"] = str(error)
    zone = valid_timezone(data.get("timezone"))
    if zone is None:
        errors["timezone"] = "choose a time zone from the list"
    if errors:
        raise ValidationError(errors)
    renamed = name != user.name
    user.name, user.timezone = name, zone
    # A checkbox is absent from the form when unticked.
    user.notify_browser = data.get("notify_browser") in ("on", "true", "1")
    if renamed:  # the other services keep a copy of the name
        record_event("user.updated", user=user)
    db.session.commit()
    log_event(logger, "user.preferences", user_id=user.id, timezone=zone, notify_browser=user.notify_browser)
    return user


def change_password(user: User, data: Mapping, hasher: PasswordHasher, client_address: str) -> None:
    """Set a new password once the current one is given; end every session; raise ValidationError.

    The current password is checked like a sign-in (web.sessions.authenticate), so
    guessing it here counts against the same limits and raises TooManyAttempts.
    The caller starts a new session for the browser that made the change.
    """
    errors = {}
    if authenticate(user.email, data.get("current_password"), client_address) is None:
        errors["current_password"] = "this is not your current password"  # noqa: S105 - a message
    try:
        new_password = clean_password(data.get("new_password"))
    except ValueError as error:
        errors["new_password"] = str(error)
    else:
        if data.get("new_password_confirm") != new_password:
            errors["new_password_confirm"] = "the new passwords do not match"  # noqa: S105 - a message
    if errors:
        raise ValidationError(errors)
    user.password_hash = hasher.hash(new_password)
    db.session.flush()  # end_all_sessions reads the row again, locked
    # Whoever knew the old password may hold a session: every one ends (the event tells the services).
    end_all_sessions(user)
    log_event(logger, "user.password_changed", user_id=user.id)
