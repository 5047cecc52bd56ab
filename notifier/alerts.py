"""The alert bridge: over-consumption alerts from RabbitMQ (STOMP) to browsers (Socket.IO).

A STOMP subscription to the durable queue `notifier.alerts` with individual
acks: an alert is acked only after it has been emitted to its owner's room and
the admins' room, so a crash or a broker restart loses none (a redelivered
alert may be emitted twice; browsers drop an alert id they have already shown).
An alert that does not parse, or whose emit breaks for any reason but a lost
connection, is sent to the dead-letter exchange with its reason in a header
(STOMP headers become AMQP headers) and acked once the broker has its receipt.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from urllib.parse import unquote, urlparse

import stomp
import stomp.exception

from common.amqp import CONNECTION_ERRORS, internal_error_reason
from common.amqp import connect as amqp_connect
from common.backoff import Backoff
from common.logs import log_event
from common.messages import Alert, InvalidMessage, parse_alert, printable_reason
from common.metrics import count_alert_delivered
from common.realtime import ADMINS_ROOM, user_room
from common.settings import Settings
from common.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    NOTIFIER_ALERTS_QUEUE,
)

logger = logging.getLogger(__name__)

ALERT_EVENT = "alert"
ALERTS_DESTINATION = f"/amq/queue/{NOTIFIER_ALERTS_QUEUE}"
SUBSCRIPTION_ID = "notifier-alerts"
# Unacked alerts the broker may push ahead; each one is acked right after its emit.
PREFETCH_COUNT = 100
# STOMP heart-beats both ways, so a dead broker is noticed within seconds.
HEARTBEAT_MS = 5000
CONNECT_TIMEOUT_SECONDS = 10


def alert_event(alert: Alert) -> dict:
    """Return what browsers receive for an alert: its fields and the device page."""
    return {**asdict(alert), "url": f"/monitor/devices/{alert.device_id}"}


def alert_rooms(alert: Alert) -> list[str]:
    """Return the rooms an alert goes to: its owner's and the administrators'."""
    return [user_room(alert.user_id), ADMINS_ROOM]


def stomp_credentials(amqp_url: str) -> tuple[str, str, str]:
    """Return the user, password and virtual host of the AMQP URL, for STOMP."""
    url = urlparse(amqp_url)
    vhost = unquote(url.path[1:]) if len(url.path) > 1 else "/"
    return unquote(url.username or "guest"), unquote(url.password or "guest"), vhost


class _Subscription(stomp.ConnectionListener):
    """One STOMP connection's subscription: emit each alert, then ack it."""

    def __init__(self, connection, emit):
        self.connection = connection
        self.emit = emit
        self.closed = threading.Event()
        # Dead letters sent, by receipt id: the original alert's ack id, acked on the receipt.
        self._dead_letters: dict[str, str] = {}

    def on_message(self, frame):
        ack_id = frame.headers.get("ack")
        try:
            alert = parse_alert(frame.body)
        except InvalidMessage as error:
            self._dead_letter(ack_id, frame, str(error))
            return
        except Exception as error:  # noqa: BLE001 - last resort: the alert must not stay unacked
            log_event(logger, "alert.parse_crashed", level=logging.ERROR, exc_info=True,
                      message_id=frame.headers.get("message-id"))
            self._dead_letter(ack_id, frame, internal_error_reason(error))
            return
        try:
            self.emit(ALERT_EVENT, alert_event(alert), to=alert_rooms(alert))
            count_alert_delivered(frame.headers)
        except CONNECTION_ERRORS as error:
            # Unacked, the alert comes back once the bridge has replaced this connection
            # (closing it from here, the receiving thread, could wait on itself).
            log_event(logger, "alert.emit_failed", level=logging.WARNING, alert_id=alert.alert_id,
                      error=type(error).__name__)
            self.closed.set()
            return
        except Exception as error:  # noqa: BLE001 - an alert that cannot be emitted is kept aside
            log_event(logger, "alert.emit_crashed", level=logging.ERROR, exc_info=True,
                      alert_id=alert.alert_id)
            self._dead_letter(ack_id, frame, internal_error_reason(error))
            return
        self.connection.ack(ack_id)
        log_event(logger, "alert.emitted", alert_id=alert.alert_id, user_id=alert.user_id)

    def _dead_letter(self, ack_id: str, frame, reason: str) -> None:
        """Send the alert to the dead-letter exchange with its reason; ack it on the broker's receipt."""
        reason = printable_reason(reason)
        receipt = f"dead-letter-{ack_id}"
        self._dead_letters[receipt] = ack_id
        log_event(logger, "alert.dead_lettered", level=logging.WARNING, reason=reason[:200])
        # The broker names where the alert was published: /exchange/<exchange>/<routing key>.
        routing_key = frame.headers.get("destination", "").rsplit("/", 1)[-1] or "alert"
        self.connection.send(
            f"/exchange/{DEAD_LETTER_EXCHANGE}/{NOTIFIER_ALERTS_QUEUE}.{routing_key}",
            frame.body,
            content_type=frame.headers.get("content-type", "application/json"),
            headers={DEAD_LETTER_REASON_HEADER: reason, DEAD_LETTER_SOURCE_HEADER: NOTIFIER_ALERTS_QUEUE,
                     "persistent": "true", "receipt": receipt},
        )

    def on_receipt(self, frame):
        ack_id = self._dead_letters.pop(frame.headers.get("receipt-id", ""), None)
        if ack_id is not None:
            self.connection.ack(ack_id)

    def on_error(self, frame):
        log_event(logger, "stomp.error", level=logging.WARNING,
                  error=frame.headers.get("message", ""))

    def on_disconnected(self):
        self.closed.set()


class AlertBridge:
    """Keep a STOMP subscription to `notifier.alerts` alive and emit every alert."""

    def __init__(self, settings: Settings, emit):
        self.settings = settings
        self.emit = emit
        self.stopping = threading.Event()

    def run(self) -> None:
        """Subscribe, and subscribe again after every disconnection, backing off up to a cap."""
        backoff = Backoff()
        while not self.stopping.is_set():
            backoff.started()
            try:
                self._subscribe_until_disconnected()
            except (stomp.exception.StompException, *CONNECTION_ERRORS) as error:
                log_event(logger, "stomp.connect_failed", level=logging.WARNING, error=type(error).__name__)
            except Exception:  # noqa: BLE001 - the bridge must outlive any one failure
                logger.exception("stomp.bridge_crashed")
            # A subscription that stayed up a while was healthy: the back-off starts over.
            delay = backoff.next_delay()
            log_event(logger, "stomp.reconnecting", level=logging.DEBUG, retry_in=round(delay, 1))
            if self.stopping.wait(delay):
                return

    def stop(self) -> None:
        """Ask the bridge to end after the current connection."""
        self.stopping.set()

    def _subscribe_until_disconnected(self) -> None:
        # The queue must exist before STOMP may subscribe to it (/amq/queue does not create).
        amqp_connect(self.settings).close()
        user, password, vhost = stomp_credentials(self.settings.amqp_url)
        connection = stomp.Connection12(
            self.settings.stomp_addresses(),
            heartbeats=(HEARTBEAT_MS, HEARTBEAT_MS),
            vhost=vhost,
            timeout=CONNECT_TIMEOUT_SECONDS,
            # This class reconnects, with its own back-off.
            reconnect_attempts_max=1,
            # Bodies stay bytes: parsed strictly, dead-lettered exactly as they came.
            auto_decode=False,
        )
        subscription = _Subscription(connection, self.emit)
        connection.set_listener("alerts", subscription)
        try:
            connection.connect(user, password, wait=True)
            connection.subscribe(ALERTS_DESTINATION, id=SUBSCRIPTION_ID, ack="client-individual",
                                 headers={"prefetch-count": str(PREFETCH_COUNT)})
            log_event(logger, "stomp.subscribed", destination=ALERTS_DESTINATION, vhost=vhost)
            subscription.closed.wait()
            log_event(logger, "stomp.disconnected", level=logging.WARNING)
        finally:
            if connection.is_connected():
                connection.disconnect()
