"""JWT configuration and verification shared by every service.

The portal (`web`) issues tokens; every other service only verifies them with
the same settings. Who a request or socket belongs to comes from the verified
token alone: `sub` is the user id, `role` and `name` are extra claims.

Sessions can be ended: every token carries its user's token version (`ver`),
which the portal bumps on a role change, a password reset, a deletion and "log
out everywhere", and publishes in its user events. Each service keeps the
newest version it was told of and refuses older tokens (`SessionVersions`,
passed to `configure_jwt` or `decode_access_token`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache, wraps

import jwt as pyjwt
from flask import Flask, jsonify, redirect, request, url_for
from flask_jwt_extended import JWTManager, create_access_token, get_jwt, verify_jwt_in_request

from common import security
from common.messages import MAX_TOKEN_VERSION
from common.settings import MIN_JWT_SECRET_LENGTH, Settings, SettingsError

ACCESS_COOKIE = "access_token_cookie"
CSRF_HEADER = "X-CSRF-TOKEN"
JWT_ALGORITHM = "HS256"
ROLES = ("admin", "client")
# The claim that carries the user's token version when the token was issued.
TOKEN_VERSION_CLAIM = "ver"  # noqa: S105 - a claim name
# The claim that carries the user's IANA time zone (absent until the browser reported one).
TIMEZONE_CLAIM = "tz"
# How long a service trusts what it looked up about a user's sessions: the most
# a revoked token can outlive its revocation there (plus the event's travel time).
SESSION_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Identity:
    """The verified user behind a request, a socket or a message."""

    user_id: int
    role: str
    name: str
    token_version: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def claims(self) -> dict:
        """Return the extra JWT claims that carry role, name and token version."""
        return {"role": self.role, "name": self.name, TOKEN_VERSION_CLAIM: self.token_version}

    @classmethod
    def from_claims(cls, claims: dict) -> Identity:
        """Build an identity from verified JWT claims."""
        role = claims.get("role")
        if role not in ROLES:
            raise pyjwt.InvalidTokenError("token has no valid role")
        return cls(user_id=int(claims["sub"]), role=role, name=str(claims.get("name", "")),
                   token_version=token_version_of(claims))


def token_version_of(claims: dict) -> int:
    """Return the token version in verified claims (0 for tokens issued before versions existed)."""
    version = claims.get(TOKEN_VERSION_CLAIM, 0)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= MAX_TOKEN_VERSION:
        raise pyjwt.InvalidTokenError("token has no valid version")
    return version


@dataclass(frozen=True)
class KnownSessions:
    """What a service was told of one user's sessions: the oldest valid version, or deletion."""

    version: int = 0
    deleted: bool = False

    def admit(self, token_version: int) -> bool:
        """Tell whether a token of this version is still valid."""
        return not self.deleted and token_version >= self.version


NOTHING_KNOWN = KnownSessions()
# The subject of tokens a service mints for its own calls (the simulator listing devices).
# No user has it (ids start at 1), so no user event can end it; such tokens live minutes.
SERVICE_USER_ID = 0


class SessionVersions:
    """A service's view of every user's token version, looked up and kept for a few seconds.

    `lookup(user_id)` returns what the service's own store says (None: nothing known,
    which admits any version, as for a user with no event yet).
    """

    def __init__(self, lookup: Callable[[int], KnownSessions | None],
                 max_age_seconds: float = SESSION_CACHE_SECONDS):
        self.lookup = lookup
        self.max_age_seconds = max_age_seconds
        self._known: dict[int, tuple[float, KnownSessions]] = {}
        self._lock = threading.Lock()

    def known(self, user_id: int) -> KnownSessions:
        """Return what is known of `user_id`'s sessions, at most `max_age_seconds` old."""
        now = time.monotonic()
        with self._lock:
            cached = self._known.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        known = self.lookup(user_id) or NOTHING_KNOWN
        if self.max_age_seconds > 0:
            with self._lock:
                if len(self._known) > 10_000:  # bounded: old entries would expire anyway
                    self._known.clear()
                self._known[user_id] = (now + self.max_age_seconds, known)
        return known

    def admit(self, claims: dict) -> bool:
        """Tell whether verified claims belong to a session that has not been ended."""
        try:
            user_id = int(claims["sub"])
            return user_id == SERVICE_USER_ID or self.known(user_id).admit(token_version_of(claims))
        except (KeyError, TypeError, ValueError, pyjwt.InvalidTokenError):
            return False

    def forget(self, user_id: int) -> None:
        """Drop what is cached of `user_id` (the store just changed)."""
        with self._lock:
            self._known.pop(user_id, None)


def wants_json() -> bool:
    """Tell whether the current request is an API call rather than a page."""
    return "/api/" in request.path or request.path.startswith("/api") or request.is_json


def configure_jwt(app: Flask, settings: Settings, sessions: SessionVersions | None = None) -> JWTManager:
    """Configure flask-jwt-extended and the security headers identically in every Flask service.

    With `sessions`, a token of a session that was ended is refused as revoked.
    """
    if len(settings.jwt_secret) < MIN_JWT_SECRET_LENGTH:
        # Settings built by hand (dataclasses.replace) skip load_settings' check.
        raise SettingsError("no usable JWT secret: see EMS_JWT_SECRET in README.md")
    security.init_app(app, settings)
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret,
        JWT_ALGORITHM=JWT_ALGORITHM,
        JWT_TOKEN_LOCATION=["cookies", "headers"],
        JWT_ACCESS_COOKIE_NAME=ACCESS_COOKIE,
        JWT_ACCESS_COOKIE_PATH="/",
        JWT_REFRESH_COOKIE_PATH="/auth/refresh",
        JWT_COOKIE_SECURE=settings.cookie_secure,
        JWT_COOKIE_SAMESITE="Lax",
        JWT_COOKIE_CSRF_PROTECT=True,
        JWT_CSRF_IN_COOKIES=True,
        JWT_ACCESS_CSRF_HEADER_NAME=CSRF_HEADER,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.access_token_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=settings.refresh_token_days),
    )
    manager = JWTManager(app)

    def refuse(message: str, status: int = 401):
        if wants_json():
            return jsonify(error=message), status
        if request.headers.get("HX-Request") == "true":
            # htmx follows this header with a full page load.
            response = app.response_class(status=status)
            response.headers["HX-Redirect"] = _login_url()
            return response
        return redirect(_login_url())

    manager.unauthorized_loader(lambda reason: refuse("authentication required"))
    manager.invalid_token_loader(lambda reason: refuse("invalid token"))
    manager.expired_token_loader(lambda header, payload: refuse("token expired"))
    manager.revoked_token_loader(lambda header, payload: refuse("token revoked"))
    manager.needs_fresh_token_loader(lambda header, payload: refuse("fresh login required"))
    if sessions is not None:
        manager.token_in_blocklist_loader(lambda header, payload: not sessions.admit(payload))
        app.extensions["ems_sessions"] = sessions
    return manager


def _login_url() -> str:
    try:
        return url_for("auth.login", next=request.full_path.rstrip("?"))
    except Exception:  # noqa: BLE001 - services without the portal's login route
        return "/login"


def current_identity() -> Identity:
    """Return the identity of the verified token of the current request."""
    return Identity.from_claims(get_jwt())


def login_required(role: str | None = None):
    """Require a valid access token (and `role`, when given) for a view.

    A missing or bad token gets 401 (or the login page); a wrong role gets 403.
    """

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            verify_jwt_in_request()
            if role is not None and current_identity().role != role:
                return forbidden()
            return view(*args, **kwargs)

        return wrapper

    return decorator


def forbidden():
    """Return the 403 answer: JSON for the API, the error page otherwise."""
    from flask import abort

    if wants_json():
        return jsonify(error="forbidden"), 403
    abort(403)


@lru_cache(maxsize=8)
def _token_app(settings: Settings) -> Flask:
    # Support mints a short-lived token for every data answer of its bot: build the
    # configured app once per settings, not once per token.
    app = Flask("ems-token")
    configure_jwt(app, settings)
    return app


def mint_access_token(settings: Settings, identity: Identity,
                      expires_delta: timedelta | None = None) -> str:
    """Issue an access token exactly as the portal does (used by the portal, tools and tests)."""
    with _token_app(settings).app_context():
        return create_access_token(identity=str(identity.user_id),
                                   additional_claims=identity.claims(),
                                   expires_delta=expires_delta)


def decode_access_token(token: str, settings: Settings, sessions: SessionVersions | None = None) -> Identity:
    """Verify an access token outside Flask (the notifier's sockets); raise if invalid or revoked."""
    if len(settings.jwt_secret) < MIN_JWT_SECRET_LENGTH:
        raise pyjwt.InvalidTokenError("no usable JWT secret to verify with")
    claims = pyjwt.decode(token, settings.jwt_secret, algorithms=[JWT_ALGORITHM],
                          options={"require": ["exp", "sub"]})
    if claims.get("type") != "access":
        raise pyjwt.InvalidTokenError("not an access token")
    if sessions is not None and not sessions.admit(claims):
        raise pyjwt.InvalidTokenError("token revoked")
    return Identity.from_claims(claims)
