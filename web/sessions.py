"""Signing in: check credentials, issue the token cookies, refresh them silently; end sessions.

A sign-in starts a session: a family of refresh tokens named by `sid`, also
carried in its access tokens. A refresh token is used once (each use issues the
next of its family); using one again means a copy was stolen, so the whole
family is revoked. Signing out revokes the family. Every token also carries the
user's token version, which web.accounts bumps to end all of a user's sessions.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
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
from sqlalchemy import delete, select, update

from common.auth import ACCESS_COOKIE, TIMEZONE_CLAIM, Identity, KnownSessions
from common.logs import log_event
from web import ratelimit
from web.accounts import find_by_email
from web.extensions import db
from web.models import RefreshToken, User, utcnow
from web.passwords import verify_password

logger = logging.getLogger(__name__)

# A token with less than this share of its lifetime left is replaced on the next request.
REFRESH_WHEN_LEFT = 0.5
# The claim that names the session (the refresh token family) in both kinds of token.
SESSION_CLAIM = "sid"
# A refresh token used again this soon after its first use is a race of one browser, not a theft.
REFRESH_REUSE_GRACE = timedelta(seconds=10)


class TooManyAttempts(Exception):
    """The e-mail from this address, or the address itself, has used up its attempts."""


def identity_of(user: User) -> Identity:
    """Return the identity carried in a user's tokens."""
    return Identity(user_id=user.id, role=user.role, name=user.name, token_version=user.token_version or 0)


def access_token_for(user: User, session_id: str | None = None) -> str:
    """Issue an access token for `user`, in session `session_id` when it has one."""
    claims = identity_of(user).claims()
    if session_id:
        claims[SESSION_CLAIM] = session_id
    if user.timezone:
        # Pages of every service show times in this zone (common.pages.viewer_timezone).
        claims[TIMEZONE_CLAIM] = user.timezone
    return create_access_token(identity=str(user.id), additional_claims=claims)


def known_sessions(user_id: int) -> KnownSessions:
    """Return the portal's own word on a user's sessions (the lookup of common.auth.SessionVersions)."""
    version = db.session.scalar(select(User.token_version).where(User.id == user_id))
    return KnownSessions(deleted=True) if version is None else KnownSessions(version=version)


def _issue_refresh_token(user: User, session_id: str) -> str:
    """Issue the next refresh token of session `session_id` and remember it (the caller commits)."""
    jti, now = str(uuid.uuid4()), utcnow()
    lifetime: timedelta = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    db.session.add(RefreshToken(jti=jti, family=session_id, user_id=user.id, issued_at=now,
                                expires_at=now + lifetime))
    return create_refresh_token(identity=str(user.id), additional_claims={
        "jti": jti, SESSION_CLAIM: session_id, **identity_of(user).claims()})


def revoke_session(session_id: str | None) -> int:
    """Revoke every refresh token of a session (the caller commits); return how many."""
    if not isinstance(session_id, str) or not session_id:
        return 0
    result = db.session.execute(update(RefreshToken)
                                .where(RefreshToken.family == session_id, RefreshToken.revoked_at.is_(None))
                                .values(revoked_at=utcnow()))
    return result.rowcount


def rotate_refresh_token(claims: dict) -> tuple[User, str, str] | None:
    """Use a verified refresh token once: return (user, new refresh token, session), or None.

    A token used before (but for a race of one browser, REFRESH_REUSE_GRACE), revoked,
    or unknown gets None; one used before also revokes its whole session, since either
    the thief or the owner holds a copy.
    """
    row = db.session.get(RefreshToken, claims.get("jti"), with_for_update=True)
    # Two requests of one browser refreshing at once (two tabs, two scripts): the later
    # one waited for the first's lock moments ago. Not a stolen copy: both get a token.
    racing = row is not None and row.revoked_at is None and row.used_at is not None \
        and utcnow() - row.used_at <= REFRESH_REUSE_GRACE
    if not racing and (row is None or row.used_at is not None or row.revoked_at is not None):
        if row is not None and row.used_at is not None:
            revoked = revoke_session(row.family)
            log_event(logger, "refresh.reused", level=logging.WARNING, user_id=row.user_id, revoked=revoked)
        db.session.commit()
        return None
    user = db.session.get(User, row.user_id)
    if user is None:
        return None
    row.used_at = row.used_at or utcnow()
    token = _issue_refresh_token(user, row.family)
    db.session.commit()
    return user, token, row.family


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
    """Start a session: put fresh access and refresh tokens (and their CSRF cookies) on `response`."""
    session_id = str(uuid.uuid4())
    # Sign-ins are rare next to requests: clearing out expired tokens here costs nothing.
    db.session.execute(delete(RefreshToken).where(RefreshToken.expires_at < utcnow()))
    refresh_token = _issue_refresh_token(user, session_id)
    db.session.commit()
    set_access_cookies(response, access_token_for(user, session_id))
    set_refresh_cookies(response, refresh_token)
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
        set_access_cookies(response, access_token_for(user, claims.get(SESSION_CLAIM)))
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
