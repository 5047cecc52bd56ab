"""Chat transport: browser chat events and admin presence, published to `ems.chat`.

The notifier does no chat logic: it attaches the verified sender to what the
browser sent and hands it to `support` through RabbitMQ. One background task
owns the AMQP connection and publishes everything in order with confirms;
socket handlers only put work on its queue, so no connection is ever shared
between green threads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from common.amqp import CONNECTION_ERRORS, ConfirmingPublisher, PublishNotConfirmed
from common.auth import Identity
from common.broker_users import url_user
from common.logs import log_event
from common.messages import CHAT_PAYLOAD_MAX_BYTES, ChatMessage, InvalidMessage, parse_utc_time
from common.settings import Settings
from common.topology import CHAT_EXCHANGE, CHAT_PRESENCE_KEY
from notifier.presence import Connections, instance_id, presence_message, utc_now_iso

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = CHAT_PAYLOAD_MAX_BYTES  # what a browser's chat event may weigh, JSON-encoded
PRESENCE_INTERVAL_SECONDS = 15
# How long a browser waits for its chat message to be confirmed by the broker.
PUBLISH_TIMEOUT_SECONDS = 5
# How often the idle publisher lets pika answer the broker's heartbeats.
IDLE_POLL_SECONDS = 5
# Work waiting for the publisher beyond this is refused rather than queued without bound.
MAX_PENDING = 10_000


class InvalidChatPayload(InvalidMessage):
    """What the browser sent is not a small JSON object; the text is the reason."""


def chat_message(sender: Identity, payload, received_at: str) -> bytes:
    """Encode a browser's chat event with its verified sender, or raise InvalidChatPayload."""
    try:
        return ChatMessage(sender, payload, parse_utc_time(received_at, "received_at")).to_json()
    except InvalidMessage as error:
        raise InvalidChatPayload(str(error)) from error


@dataclass
class _Publication:
    routing_key: str
    body: bytes
    done: object = None  # an event of the async mode when someone waits for the result
    error: str | None = field(default=None)


class ChatForwarder:
    """Publish chat events and presence to `ems.chat` from one background task."""

    def __init__(self, settings: Settings, socketio, connections: Connections):
        self.settings = settings
        self.socketio = socketio
        self.connections = connections
        self.instance = instance_id()
        # Stamped on every message: the broker refuses it unless it is this connection's user,
        # so support knows the message comes from a notifier (common/broker_users.py).
        self.broker_user = url_user(settings.amqp_url)
        self._eio = socketio.server.eio
        self._pending = self._eio.create_queue(MAX_PENDING)
        self._started = False

    def start(self) -> None:
        """Start the publishing and the periodic presence tasks (once)."""
        if not self._started:
            self._started = True
            self.socketio.start_background_task(self._publish_forever)
            self.socketio.start_background_task(self._report_presence_forever)

    def forward(self, sender: Identity, routing_key: str, payload) -> dict:
        """Publish one chat event and wait for the broker; return the browser's ack."""
        try:
            body = chat_message(sender, payload, utc_now_iso())
        except InvalidChatPayload as error:
            log_event(logger, "chat.refused", level=logging.WARNING, user_id=sender.user_id,
                      routing_key=routing_key, reason=str(error))
            return {"ok": False, "error": str(error)}
        publication = _Publication(routing_key, body, done=self._eio.create_event())
        if not self._enqueue(publication):
            return {"ok": False, "error": "busy, try again"}
        if not publication.done.wait(PUBLISH_TIMEOUT_SECONDS):
            log_event(logger, "chat.publish_timeout", level=logging.WARNING,
                      user_id=sender.user_id, routing_key=routing_key)
            return {"ok": False, "error": "not delivered, try again"}
        if publication.error:
            return {"ok": False, "error": "not delivered, try again"}
        return {"ok": True}

    def admins_changed(self) -> None:
        """Report the new set of connected admins now (without waiting for the broker)."""
        self._enqueue(self._presence())

    def _presence(self) -> _Publication:
        body = presence_message(self.instance, self.connections.admin_ids(), utc_now_iso())
        return _Publication(CHAT_PRESENCE_KEY, body)

    def _enqueue(self, publication: _Publication) -> bool:
        try:
            self._pending.put_nowait(publication)
            return True
        except Exception as error:  # noqa: BLE001 - the async mode's own queue.Full
            log_event(logger, "chat.queue_full", level=logging.WARNING,
                      routing_key=publication.routing_key, error=type(error).__name__)
            return False

    def _report_presence_forever(self) -> None:
        while True:
            self.socketio.sleep(PRESENCE_INTERVAL_SECONDS)
            self._enqueue(self._presence())

    def _publish_forever(self) -> None:
        publisher = ConfirmingPublisher(self.settings)
        empty = self._eio.get_queue_empty_exception()
        while True:
            try:
                publication = self._pending.get(timeout=IDLE_POLL_SECONDS)
            except empty:
                self._keep_alive(publisher)
                continue
            try:
                publication.error = self._publish(publisher, publication)
            except Exception as error:  # noqa: BLE001 - this task must outlive any one message
                logger.exception("chat.publish_crashed")
                publication.error = type(error).__name__
                publisher.close()
            if publication.done is not None:
                publication.done.set()

    def _keep_alive(self, publisher: ConfirmingPublisher) -> None:
        try:
            publisher.process_events()
        except CONNECTION_ERRORS:
            publisher.close()

    def _publish(self, publisher: ConfirmingPublisher, publication: _Publication) -> str | None:
        """Publish with one retry on a fresh connection; return the error, if any."""
        for attempt in (1, 2):
            try:
                publisher.publish(CHAT_EXCHANGE, publication.routing_key, publication.body,
                                  user_id=self.broker_user)
                return None
            except PublishNotConfirmed as error:
                reason = str(error)
            except CONNECTION_ERRORS as error:
                reason = type(error).__name__
                publisher.close()
            log_event(logger, "chat.publish_failed", level=logging.WARNING, attempt=attempt,
                      routing_key=publication.routing_key, error=reason)
        return reason
