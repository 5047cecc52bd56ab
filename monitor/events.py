"""Keep the monitor's copy of devices and user sessions from the portal's events (`monitor.events`).

The queue has a single active consumer, so events arrive in publish order;
`last_sequence` still guards against an older event redelivered after a newer
one was applied (ignored, never applied twice).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pika
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from common.amqp import connect, dead_letter, internal_error_reason
from common.db import blames_the_message, refusal_reason, utcnow
from common.health import HEALTH
from common.logs import log_event
from common.messages import Event, InvalidMessage, parse_event
from common.settings import Settings
from common.topology import MONITOR_EVENTS_QUEUE

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS = 1.0

SELECT_SEQUENCE = text("SELECT last_sequence FROM devices WHERE id = :id FOR UPDATE")
# A device that changes hands is its new owner's from the event's time on (`owner_since`):
# the new owner must see nothing of the previous one's. A device that never had an owner
# keeps NULL, so the first owner sees its whole history (a backfill, say). The assignment
# of owner_since comes first: MariaDB evaluates them in order, owner_id still the old one.
UPSERT_DEVICE = text(
    "INSERT INTO devices (id, name, owner_id, max_hourly_kwh, deleted, last_sequence) "
    "VALUES (:id, :name, :owner_id, :limit, :deleted, :sequence) "
    "ON DUPLICATE KEY UPDATE owner_since = IF(owner_id <=> VALUES(owner_id), owner_since, "
    "IF(owner_id IS NULL AND owner_since IS NULL, NULL, :occurred_at)), "
    "name = VALUES(name), owner_id = VALUES(owner_id), "
    "max_hourly_kwh = VALUES(max_hourly_kwh), deleted = VALUES(deleted), "
    "last_sequence = VALUES(last_sequence)"
)
SELECT_USER_SEQUENCE = text("SELECT last_sequence FROM user_sessions WHERE user_id = :id FOR UPDATE")
# A version never goes down, whatever order events of one user arrive in.
UPSERT_USER_SESSION = text(
    "INSERT INTO user_sessions (user_id, token_version, deleted, last_sequence) "
    "VALUES (:id, :version, :deleted, :sequence) "
    "ON DUPLICATE KEY UPDATE token_version = GREATEST(token_version, VALUES(token_version)), "
    "deleted = VALUES(deleted), last_sequence = VALUES(last_sequence)"
)
RELEASE_OWNED_DEVICES = text(
    "UPDATE devices SET owner_since = :occurred_at, owner_id = NULL, last_sequence = :sequence "
    "WHERE owner_id = :user_id AND last_sequence < :sequence"
)


def occurred_at(event: Event) -> datetime:
    """Return when the portal made the change, as naive UTC (now, if the event's time is unreadable)."""
    try:
        moment = datetime.fromisoformat(event.occurred_at)
    except ValueError:
        return utcnow()
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def apply_event(connection: Connection, event: Event) -> bool:
    """Apply one event to the devices or user sessions; return False if it was older than what is stored."""
    if event.device is not None:
        stored = connection.execute(SELECT_SEQUENCE, {"id": event.device.id}).scalar()
        if stored is not None and stored >= event.sequence:
            return False
        connection.execute(UPSERT_DEVICE, {
            "id": event.device.id, "name": event.device.name[:200], "owner_id": event.device.owner_id,
            "limit": str(event.device.max_hourly_kwh), "deleted": event.type == "device.deleted",
            "sequence": event.sequence, "occurred_at": occurred_at(event),
        })
        return True
    if event.user is None:
        return True
    if event.type == "user.deleted":
        # A deleted user's devices have nobody left to alert.
        connection.execute(RELEASE_OWNED_DEVICES, {"user_id": event.user.id, "sequence": event.sequence,
                                                   "occurred_at": occurred_at(event)})
    stored = connection.execute(SELECT_USER_SEQUENCE, {"id": event.user.id}).scalar()
    if stored is not None and stored >= event.sequence:
        return False
    # The monitor API refuses tokens older than this version, and every token of a deleted user.
    connection.execute(UPSERT_USER_SESSION, {"id": event.user.id, "version": event.user.token_version,
                                             "deleted": event.type == "user.deleted",
                                             "sequence": event.sequence})
    return True


class EventsConsumer:
    """One connection's life of the events consumer; `run` again after it is lost."""

    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self.stopping = False
        self._connection: pika.BlockingConnection | None = None

    def stop(self) -> None:
        """Leave after the current event (called from a signal handler)."""
        self.stopping = True

    def run(self) -> None:
        """Consume events until stopped; raise a connection error on failure."""
        self._connection = connect(self.settings)
        try:
            channel = self._connection.channel()
            # One at a time: events must be applied in order.
            channel.basic_qos(prefetch_count=1)
            publish_channel = self._connection.channel()
            publish_channel.confirm_delivery()
            log_event(logger, "monitor.events_connected", queue=MONITOR_EVENTS_QUEUE)
            HEALTH.set_ready(True)
            for method, properties, body in channel.consume(MONITOR_EVENTS_QUEUE,
                                                            inactivity_timeout=IDLE_TIMEOUT_SECONDS):
                HEALTH.turned()
                if method is not None:
                    self._handle(publish_channel, method, properties, body)
                    channel.basic_ack(method.delivery_tag)
                if self.stopping:
                    channel.cancel()
                    return
        finally:
            if self._connection.is_open:
                try:
                    self._connection.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass

    def _handle(self, publish_channel, method, properties, body: bytes) -> None:
        """Apply one event, or dead-letter it with the reason it can never be applied.

        One stuck event would stall every device change behind it (the queue has a
        single active consumer), so only an outage is retried.
        """
        try:
            self._apply(body)
        except InvalidMessage as error:
            self._dead_letter(publish_channel, method, properties, body, str(error))
        except DBAPIError as error:
            if not blames_the_message(error):
                raise ConnectionError(f"applying event failed: {error.__class__.__name__}") from error
            self._dead_letter(publish_channel, method, properties, body, refusal_reason(error))
        except Exception as error:  # noqa: BLE001 - last resort: one event must not stall the rest
            log_event(logger, "monitor.event_crashed", level=logging.ERROR, exc_info=True,
                      message_id=properties.message_id)
            self._dead_letter(publish_channel, method, properties, body, internal_error_reason(error))

    def _apply(self, body: bytes) -> None:
        event = parse_event(body)
        with self.engine.begin() as connection:
            applied = apply_event(connection, event)
        log_event(logger, "monitor.event_applied" if applied else "monitor.event_stale",
                  type=event.type, sequence=event.sequence)

    @staticmethod
    def _dead_letter(publish_channel, method, properties, body: bytes, reason: str) -> None:
        dead_letter(publish_channel, MONITOR_EVENTS_QUEUE, method.routing_key, body, reason, properties)
        log_event(logger, "monitor.event_dead_lettered", level=logging.WARNING,
                  message_id=properties.message_id, reason=reason[:200])
