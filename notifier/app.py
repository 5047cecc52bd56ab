"""Wiring of the notifier: the Flask app, Socket.IO on the shared message queue, handlers.

This module and `events` know nothing of the asynchronous server underneath;
the entry point (`python -m notifier`) chooses it.
"""

from __future__ import annotations

from flask import Flask
from flask_socketio import SocketIO

from common.amqp import kombu_url
from common.realtime import SOCKETIO_CHANNEL
from common.settings import Settings, load_settings

# The largest chat message (notifier.chat.MAX_PAYLOAD_BYTES) fits even when a
# client escapes every character as JSON \uXXXX pairs; nothing else is larger.
MAX_PACKET_BYTES = 32 * 1024


def allowed_origin(settings: Settings):
    """Return the origin check: the public gateway's origin or the server's own.

    Browsers send `Origin` on WebSocket handshakes but apply no CORS to them, so
    without this check any web site could open a socket with the visitor's
    cookie (cross-site WebSocket hijacking). Clients that send no Origin (other
    services, tests) are not browsers and still need a valid token.
    """
    public = settings.public_url.rstrip("/")

    def check(origin: str | None, environ: dict) -> bool:
        if origin is None or origin == public:
            return True
        host = environ.get("HTTP_HOST")
        if not host:
            return False
        schemes = {environ.get("wsgi.url_scheme", "http"),
                   environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip()}
        return any(origin == f"{scheme}://{host}" for scheme in schemes if scheme)

    return check


def create_socketio(app: Flask, settings: Settings, async_mode: str | None = None) -> SocketIO:
    """Attach Socket.IO to `app`, sharing rooms with every replica through RabbitMQ."""
    return SocketIO(
        app,
        async_mode=async_mode,
        message_queue=kombu_url(settings.amqp_url),
        channel=SOCKETIO_CHANNEL,
        cors_allowed_origins=allowed_origin(settings),
        cors_credentials=True,
        max_http_buffer_size=MAX_PACKET_BYTES,
        # The portal owns the session; the socket's identity is the JWT alone.
        manage_session=False,
        logger=False,
        engineio_logger=False,
    )


def create_app(settings: Settings | None = None, async_mode: str | None = None) -> Flask:
    """Create the notifier's Flask app with Socket.IO, its handlers and its background work."""
    from notifier.chat import ChatForwarder
    from notifier.events import register_events
    from notifier.presence import Connections
    from notifier.sessions import SessionWatch

    settings = settings or load_settings(service="notifier")
    app = Flask(__name__)
    app.config["EMS_SETTINGS"] = settings
    socketio = create_socketio(app, settings, async_mode)
    connections = Connections()
    forwarder = ChatForwarder(settings, socketio, connections)
    sessions = SessionWatch(settings, socketio, connections, forwarder.instance)
    register_events(socketio, settings, connections, forwarder, sessions.versions)
    app.extensions["ems_chat_forwarder"] = forwarder
    app.extensions["ems_sessions"] = sessions
    app.extensions["ems_connections"] = connections

    return app


def start_background_work(app: Flask) -> None:
    """Start the chat publisher, the presence reports, the session watch and the alert bridge."""
    from notifier.alerts import AlertBridge
    from notifier.events import close_expired_sockets_forever

    socketio = app.extensions["socketio"]
    app.extensions["ems_chat_forwarder"].start()
    app.extensions["ems_sessions"].start()
    socketio.start_background_task(close_expired_sockets_forever, socketio,
                                   app.extensions["ems_connections"])
    bridge = AlertBridge(app.config["EMS_SETTINGS"], socketio.emit)
    socketio.start_background_task(bridge.run)
