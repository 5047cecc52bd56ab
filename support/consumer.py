"""The consumer of `support.inbound`: one message at a time, acked after commit.

Invalid or forbidden messages are dead-lettered with their reason. A database
outage requeues the message after a pause instead of losing it.
"""

from __future__ import annotations

import logging
import signal
import time

from sqlalchemy.exc import OperationalError

from common.amqp import connect, dead_letter, run_with_reconnect
from common.logs import log_event
from common.topology import SUPPORT_INBOUND_QUEUE
from support.chat import Rejected
from support.service import ChatService

logger = logging.getLogger(__name__)
PREFETCH = 32
PRESENCE_CHECK_SECONDS = 15
DATABASE_RETRY_SECONDS = 2.0


class SupportConsumer:
    """Consume inbound chat messages and hand each to the chat service."""

    def __init__(self, settings, service: ChatService):
        self.settings = settings
        self.service = service
        self.stopping = False
        self._channel = None
        self._connection = None

    def run(self) -> None:
        """Consume until SIGTERM/SIGINT, reconnecting after broker failures."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        run_with_reconnect(self._consume, SUPPORT_INBOUND_QUEUE, should_stop=lambda: self.stopping)

    def _stop(self, *_):
        self.stopping = True
        if self._channel is not None and self._channel.is_open:
            self._channel.stop_consuming()

    def _consume(self) -> None:
        self._connection = connect(self.settings)
        try:
            self._channel = self._connection.channel()
            # Dead letters must be confirmed before the original is acked.
            self._channel.confirm_delivery()
            self._channel.basic_qos(prefetch_count=PREFETCH)
            self._channel.basic_consume(SUPPORT_INBOUND_QUEUE, self.on_delivery)
            self._schedule_presence_check()
            log_event(logger, "support.consuming", queue=SUPPORT_INBOUND_QUEUE)
            self._channel.start_consuming()
        finally:
            if self._connection.is_open:
                self._connection.close()

    def _schedule_presence_check(self) -> None:
        def check():
            try:
                self.service.refresh_presence()
            except OperationalError:
                log_event(logger, "support.presence_check_failed", level=logging.WARNING)
            self._connection.call_later(PRESENCE_CHECK_SECONDS, check)

        self._connection.call_later(0, check)

    def on_delivery(self, channel, method, properties, body: bytes) -> None:
        """Process one delivery: ack after commit, dead-letter if invalid, requeue if the DB is down."""
        try:
            self.service.handle(method.routing_key, body)
        except Rejected as error:
            dead_letter(channel, SUPPORT_INBOUND_QUEUE, method.routing_key, body, str(error), properties)
            log_event(logger, "support.dead_lettered", level=logging.WARNING,
                      routing_key=method.routing_key, reason=str(error))
        except OperationalError as error:
            log_event(logger, "support.database_unavailable", level=logging.WARNING,
                      error=type(error).__name__)
            time.sleep(DATABASE_RETRY_SECONDS)
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        channel.basic_ack(method.delivery_tag)
