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
    """The e-mail from this address, or the address itself, has used up its attempts."""


def identity_of(user: User) -> Identity:
    """Return the identity carried in a user's tokens."""
    return Identity(user_id=user.id, role=user.role, name=user.name)


def access_token_for(user: User) -> str:
    """Issue an access token for `user`."""
    identity = identity_of(user)
    return create_access_token(identity=str(user.id), additional_claims=identity.claims())


def authenticate(email: str, password: str, client_address: str) -> User | None:
    """Return the user these credentials belong to, or None; raise TooManyAttempts.

    Only failures count, against two limits: the e-mail from this address, and
    the address over every e-mail (one password tried on every account).
    """
    settings = current_app.config["EMS_SETTINGS"]
    hasher = current_app.extensions["ems_password_hasher"]
    key = ratelimit.attempt_key(email, client_address)
    address_key = ratelimit.address_attempt_key(client_address)
    now = utcnow()
    if (ratelimit.is_limited(key, settings.login_attempts_per_minute, now)
            or ratelimit.is_limited(address_key, settings.login_attempts_per_address_per_minute, now)):
        log_event(logger, "login.rate_limited")
        raise TooManyAttempts
    user = find_by_email(email) if isinstance(email, str) else None
    password = password if isinstance(password, str) else ""
    # Verify against a dummy hash for unknown e-mails so timing does not reveal them.
    stored = user.password_hash if user else current_app.extensions["ems_dummy_hash"]
    if not verify_password(hasher, stored, password) or user is None:
        ratelimit.record([key, address_key], now)
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


def is_same_origin_path(target: object) -> bool:
    """Tell whether `target` is a path on this site, by the rule login.js applies too.

    A single `/` followed by neither `/` nor `\\` (browsers read both as the start
    of another host), and no control or whitespace character (browsers drop tabs
    and newlines, so `/\\t/evil.example` becomes `//evil.example`). Such a string
    can only resolve to this origin.
    """
    if not isinstance(target, str) or len(target) < 1 or target[0] != "/":
        return False
    if target[1:2] in ("/", "\\"):
        return False
    return not any(ord(ch) < 32 or 127 <= ord(ch) <= 159 or ch.isspace() for ch in target)


def safe_next(target: str | None, default: str = "/") -> str:
    """Return `target` if it is a path on this site, else `default` (no open redirects)."""
    return target if is_same_origin_path(target) else default


def too_many_signups(address: str) -> bool:
    """Count one sign-up attempt from `address`; tell whether it is over the hourly limit."""
    now = utcnow()
    key = ratelimit.signup_key(address)
    limit = current_app.config["EMS_SETTINGS"].signups_per_address_per_hour
    if ratelimit.is_limited(key, limit, now, ratelimit.SIGNUP_WINDOW):
        log_event(logger, "signup.rate_limited")
        return True
    ratelimit.record([key], now)
    return False


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
    """Return the browser's address: behind the gateway, the one it put in X-Forwarded-For
    (common.security.trust_gateway), never one the client chose."""
    return request.remote_addr or "-"
