"""Signing in: check credentials, issue the token cookies, refresh them silently."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Response, current_app, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    get_jwt,
    get_jwt_request_location,
    set_access_cookies,
    set_refresh_cookies,
    verify_jwt_in_request,
)

from common.auth import ACCESS_COOKIE, Identity
from common.logs import log_event
from web import ratelimit
from web.accounts import find_by_email
from web.extensions import db
from web.models import User, utcnow
from web.passwords import verify_password

logger = logging.getLogger(__name__)

# A token with less than this share of its lifetime left is replaced on the next request.
REFRESH_WHEN_LEFT = 0.5


class TooManyAttempts(Exception):
    """The e-mail and address have used up their login attempts for this minute."""


def identity_of(user: User) -> Identity:
    """Return the identity carried in a user's tokens."""
    return Identity(user_id=user.id, role=user.role, name=user.name)


def access_token_for(user: User) -> str:
    """Issue an access token for `user`."""
    identity = identity_of(user)
    return create_access_token(identity=str(user.id), additional_claims=identity.claims())


def authenticate(email: str, password: str, client_address: str) -> User | None:
    """Return the user these credentials belong to, or None; raise TooManyAttempts.

    Only failures count towards the limit, keyed by e-mail and client address.
    """
    settings = current_app.config["EMS_SETTINGS"]
    hasher = current_app.extensions["ems_password_hasher"]
    key = ratelimit.attempt_key(email, client_address)
    now = utcnow()
    if ratelimit.is_limited(key, settings.login_attempts_per_minute, now):
        log_event(logger, "login.rate_limited")
        raise TooManyAttempts
    user = find_by_email(email) if isinstance(email, str) else None
    password = password if isinstance(password, str) else ""
    # Verify against a dummy hash for unknown e-mails so timing does not reveal them.
    stored = user.password_hash if user else current_app.extensions["ems_dummy_hash"]
    if not verify_password(hasher, stored, password) or user is None:
        ratelimit.record_failure(key, now)
        log_event(logger, "login.failed")
        return None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        db.session.commit()
    log_event(logger, "login.succeeded", user_id=user.id)
    return user


def start_session(response: Response, user: User) -> Response:
    """Put fresh access and refresh tokens (and their CSRF cookies) on `response`."""
    set_access_cookies(response, access_token_for(user))
    set_refresh_cookies(response, create_refresh_token(identity=str(user.id)))
    return response


def safe_next(target: str | None, default: str = "/") -> str:
    """Return `target` if it is a path on this site, else `default` (no open redirects)."""
    if not target or not isinstance(target, str):
        return default
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//")
            or "\\" in target or any(ord(ch) < 32 for ch in target)):
        return default
    return target


def refresh_expiring_access_token(response: Response) -> Response:
    """Replace a cookie access token with less than half a lifetime left (after_request hook).

    Role and name are read again from the database, so a change reaches the token;
    a deleted user gets no new token.
    """
    if any(header.startswith(ACCESS_COOKIE + "=") for header in response.headers.getlist("Set-Cookie")):
        return response  # this response signs in or out already
    try:
        if verify_jwt_in_request(optional=True, locations=["cookies"]) is None:
            return response
        if get_jwt_request_location() != "cookies":
            return response
        claims = get_jwt()
    except Exception:  # noqa: BLE001 - a bad or expired token is answered elsewhere; nothing to refresh
        return response
    lifetime = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()
    left = claims["exp"] - datetime.now(UTC).timestamp()
    if left > lifetime * REFRESH_WHEN_LEFT:
        return response
    user = db.session.get(User, int(claims["sub"]))
    if user is not None:
        set_access_cookies(response, access_token_for(user))
    return response


def cross_site_post() -> bool:
    """Tell whether a sign-in or sign-up form was posted from another site.

    These forms have no session (hence no CSRF token) yet; browsers send Origin on
    every POST, so a foreign Origin is refused (login CSRF).
    """
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != request.host


def client_address() -> str:
    """Return the address of the browser (behind the gateway, from X-Forwarded-For via ProxyFix)."""
    return request.remote_addr or "-"
