"""The Socket.IO message queue that lets any process emit to browsers.

The notifier is the only WebSocket endpoint; support (and anything else) emits
through the same RabbitMQ-backed queue, on the same channel name, and the
notifier delivers to its connected sockets.
"""

from __future__ import annotations

from common.settings import Settings

SOCKETIO_CHANNEL = "ems-socketio"
ADMINS_ROOM = "admins"


def user_room(user_id: int | str) -> str:
    """Return the Socket.IO room that reaches every socket of one user."""
    return f"user:{user_id}"


def socketio_emitter(settings: Settings):
    """Return a write-only Socket.IO manager for emitting from outside the notifier."""
    import socketio

    from common.amqp import kombu_url

    return socketio.KombuManager(kombu_url(settings.amqp_url), channel=SOCKETIO_CHANNEL, write_only=True)
