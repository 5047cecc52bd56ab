"""Ended sessions: each notifier instance follows user events and closes the sockets they end.

The portal publishes `user.updated` (with the user's new token version) and
`user.deleted` to `ems.events`. Each instance hears them on a queue of its own
(exclusive, auto-delete: it lives as long as the instance's connection), keeps
the newest version per user in memory, refuses older tokens at connect, and
disconnects the sockets it holds with an older token at once.

An instance knows only the events published while it runs: after a restart,
a token of an ended session is admitted again until its `exp` (access tokens
live `EMS_ACCESS_TOKEN_MINUTES`), which the portal and support still refuse.

One background task owns the AMQP connection (as in notifier.chat): socket
handlers only read the versions, never touch the connection.
"""

from __future__ import annotations

import logging

from common.amqp import CONNECTION_ERRORS, connect
from common.amqp import dead_letter as publish_dead_letter
from common.auth import KnownSessions, SessionVersions
from common.backoff import Backoff
from common.logs import log_event
from common.messages import Event, InvalidMessage, parse_event
from common.realtime import user_room
from common.settings import Settings
from common.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    USER_EVENTS_KEY,
    notifier_sessions_queue,
)
from notifier.presence import Connections

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS = 1.0
NAMESPACE = "/"


class SessionWatch:
    """The newest token version of each user this instance heard of, and the sockets it ends."""

    def __init__(self, settings: Settings, socketio, connections: Connections, instance: str):
        self.settings = settings
        self.socketio = socketio
        self.connections = connections
        self.queue = notifier_sessions_queue(instance)
        # user id -> (sequence of the newest event applied, what it said)
        self._known: dict[int, tuple[int, KnownSessions]] = {}
        # In memory and updated by this process alone: nothing to cache.
        self.versions = SessionVersions(self.known, max_age_seconds=0)
        self._started = False
        self._backoff = Backoff()

    def known(self, user_id: int) -> KnownSessions | None:
        """Return what this instance heard of `user_id`'s sessions, or None."""
        entry = self._known.get(user_id)
        return entry[1] if entry is not None else None

    def apply(self, event: Event) -> KnownSessions | None:
        """Remember what a user event says; return it, or None if it was older than what is known."""
        if event.user is None:
            raise InvalidMessage(f"{event.type} is not a user event")
        user_id = event.user.id
        previous = self._known.get(user_id)
        if previous is not None and previous[0] >= event.sequence:
            return None
        version = max(event.user.token_version, previous[1].version if previous else 0)
        known = KnownSessions(version=version, deleted=event.type == "user.deleted")
        self._known[user_id] = (event.sequence, known)
        return known

    def close_ended_sockets(self, user_id: int, known: KnownSessions) -> int:
        """Disconnect this instance's sockets of `user_id` whose token `known` no longer admits."""
        ended = []
        for sid, _ in self.socketio.server.manager.get_participants(NAMESPACE, user_room(user_id)):
            user = self.connections.user(sid)
            if user is None or not known.admit(user.identity.token_version):
                ended.append(sid)
        for sid in ended:
            # A local socket, and every instance hears the same event: nothing to tell the others
            # through the message queue (whose disconnect messages every instance would handle).
            self.socketio.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
        if ended:
            log_event(logger, "socket.session_ended", user_id=user_id, sockets=len(ended))
        return len(ended)

    def start(self) -> None:
        """Start following user events (once)."""
        if not self._started:
            self._started = True
            self.socketio.start_background_task(self._follow_forever)

    def _follow_forever(self) -> None:
        while True:
            try:
                self._follow()
            except CONNECTION_ERRORS as error:
                log_event(logger, "sessions.reconnect", level=logging.WARNING, error=type(error).__name__)
            except Exception:  # noqa: BLE001 - this task must outlive any failure
                logger.exception("sessions.follow_crashed")
            self.socketio.sleep(self._backoff.next_delay())

    def _follow(self) -> None:
        connection = connect(self.settings)
        try:
            channel = connection.channel()
            # Dead letters must be confirmed before the original is acked.
            channel.confirm_delivery()
            channel.queue_declare(self.queue, exclusive=True, auto_delete=True,
                                  arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE})
            channel.queue_bind(self.queue, EVENTS_EXCHANGE, routing_key=USER_EVENTS_KEY)
            log_event(logger, "sessions.following", queue=self.queue)
            self._backoff.reset()  # connected: the next failure starts over
            deliveries = channel.consume(self.queue, inactivity_timeout=IDLE_TIMEOUT_SECONDS)
            for method, properties, body in deliveries:
                if method is not None:
                    self._handle(channel, method, properties, body)
                    channel.basic_ack(method.delivery_tag)
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except CONNECTION_ERRORS:
                    pass

    def _handle(self, channel, method, properties, body: bytes) -> None:
        """Apply one user event and close the sockets it ends, or dead-letter it with the reason."""
        try:
            event = parse_event(body)
            known = self.apply(event)
        except InvalidMessage as error:
            publish_dead_letter(channel, self.queue, method.routing_key, body, str(error), properties)
            log_event(logger, "sessions.event_dead_lettered", level=logging.WARNING, reason=str(error))
            return
        if known is not None:
            self.close_ended_sockets(event.user.id, known)
