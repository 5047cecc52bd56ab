"""Socket.IO handlers: authenticate on connect, forward chat events.

Who a socket belongs to is decided once, at connect, from the verified JWT;
no handler reads an identity from what the browser sends.
"""

from __future__ import annotations

import logging
import time

import jwt as pyjwt
from flask import request
from flask_socketio import ConnectionRefusedError, join_room

from common.auth import ACCESS_COOKIE, Identity, SessionVersions, decode_access_token
from common.logs import log_event
from common.metrics import CHAT_EVENTS
from common.realtime import ADMINS_ROOM, user_room
from common.settings import Settings
from common.topology import CHAT_MESSAGE_KEY, CHAT_READ_KEY, CHAT_TYPING_KEY
from notifier.chat import ChatForwarder
from notifier.presence import Connections

logger = logging.getLogger(__name__)

UNAUTHORIZED = "unauthorized"
TOO_MANY_EVENTS = "too many events, slow down"
TOO_MANY_SOCKETS = "too many connections for this user: close another tab first"


# How often sockets whose access token expired are closed (the browser then
# refreshes its token and connects again).
EXPIRY_SWEEP_SECONDS = 30


def socket_identity(auth, cookie_token: str | None, settings: Settings,
                    sessions: SessionVersions | None = None) -> tuple[Identity, float] | None:
    """Return the identity and expiry of the token in Socket.IO `auth` or the cookie, or None.

    With `sessions`, a token of a session that was ended is refused too.
    """
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        token = cookie_token
    if not token:
        return None
    try:
        identity = decode_access_token(token, settings, sessions)
        # The signature and `exp` were verified just above; this only reads `exp`.
        claims = pyjwt.decode(token, options={"verify_signature": False})
        return identity, float(claims["exp"])
    except (pyjwt.InvalidTokenError, KeyError, ValueError, TypeError):
        return None


def close_expired_sockets_forever(socketio, connections: Connections) -> None:
    """Disconnect sockets whose token expired, so identity never outlives its token."""
    while True:
        socketio.sleep(EXPIRY_SWEEP_SECONDS)
        expired = connections.expired()
        if expired:
            log_event(logger, "socket.expired", sockets=len(expired))
        for sid in expired:
            socketio.server.disconnect(sid)


def register_events(socketio, settings: Settings, connections: Connections,
                    forwarder: ChatForwarder, sessions: SessionVersions | None = None) -> None:
    """Register the notifier's Socket.IO handlers on `socketio` (and the settings' per-user limits)."""
    connections.configure(settings.chat_event_burst, settings.chat_events_per_second,
                          settings.sockets_per_user)

    @socketio.on("connect")
    def connect(auth=None):
        """Admit a socket with a valid access token into its user's rooms."""
        verified = socket_identity(auth, request.cookies.get(ACCESS_COOKIE), settings, sessions)
        if verified is None:
            log_event(logger, "socket.refused", level=logging.INFO, reason=UNAUTHORIZED)
            raise ConnectionRefusedError(UNAUTHORIZED)
        identity, expires_at = verified
        if not connections.has_room_for(identity.user_id):
            log_event(logger, "socket.refused", level=logging.INFO, reason="too many sockets",
                      user_id=identity.user_id)
            raise ConnectionRefusedError(TOO_MANY_SOCKETS)
        join_room(user_room(identity.user_id))
        if identity.is_admin:
            join_room(ADMINS_ROOM)
        if connections.add(request.sid, identity, expires_at):
            forwarder.admins_changed()

    @socketio.on("disconnect")
    def disconnect(*_reason):
        """Forget the socket; report presence if the last tab of an admin closed."""
        if connections.remove(request.sid):
            forwarder.admins_changed()

    def forward(routing_key: str, payload) -> dict:
        CHAT_EVENTS.labels(event=routing_key).inc()
        user = connections.user(request.sid)
        if user is None:
            return {"ok": False, "error": UNAUTHORIZED}
        if not user.budget.spend(time.monotonic()):
            return {"ok": False, "error": TOO_MANY_EVENTS}
        return forwarder.forward(user.identity, routing_key, payload)

    @socketio.on("chat:send")
    def chat_send(payload=None):
        """Forward a chat message to support; the ack tells the browser it is safe."""
        return forward(CHAT_MESSAGE_KEY, payload)

    @socketio.on("chat:typing")
    def chat_typing(payload=None):
        """Forward a typing indicator to support."""
        return forward(CHAT_TYPING_KEY, payload)

    @socketio.on("chat:read")
    def chat_read(payload=None):
        """Forward a read receipt to support."""
        return forward(CHAT_READ_KEY, payload)
