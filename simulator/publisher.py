"""A fast confirming publisher: many messages in flight, confirmed by the broker in batches.

A blocking pika channel in confirm mode waits for every single confirm, which
caps a publisher at a few hundred persistent messages per second. This one
runs an asynchronous connection, keeps up to `window` messages unconfirmed and
counts the broker's (usually `multiple`) confirms. After a lost connection
every unconfirmed message is sent again on a new one, so a reading may arrive
twice but is never lost (the pipeline stores readings idempotently).

A nack means the broker is overloaded (`readings.incoming` at its length
limit): the nacked messages are sent again after a back-off that doubles up to
a cap, and the window halves at each nack and grows back with acks, so a
publisher facing a full queue probes with a few messages instead of a flood.
Memory stays bounded: fresh messages are drawn from the iterable only while
unconfirmed plus awaiting-retry messages number fewer than `window`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pika
from pika.spec import Basic

from common.amqp import PERSISTENT, BrokerRotation, connect
from common.amqp_async import CoalescingSelectConnection
from common.logs import log_event
from common.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 2000
RECONNECT_DELAY_SECONDS = 1.0
MAX_RECONNECTS = 30
RATE_TICK_SECONDS = 0.01
NACK_FIRST_DELAY_SECONDS = 0.05
NACK_MAX_DELAY_SECONDS = 2.0


@dataclass
class PublishSummary:
    """What a publishing run achieved."""

    sent: int = 0
    confirmed: int = 0
    nacked: int = 0  # refused by the broker (overload), then sent again after a back-off
    resent: int = 0  # unconfirmed when a connection was lost, sent again on the next
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Return confirmed messages per second."""
        return self.confirmed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """Return the one-line summary printed at the end of a run."""
        return (f"sent={self.sent} confirmed={self.confirmed} nacked={self.nacked} resent={self.resent} "
                f"seconds={self.seconds:.2f} rate={self.rate:.0f}/s")


class ConfirmedBurstPublisher:
    """Publish every body of an iterable to one exchange with confirms, as fast as allowed."""

    def __init__(self, settings: Settings, exchange: str, routing_key: str,
                 window: int = DEFAULT_WINDOW, rate: float | None = None,
                 progress: Callable[[PublishSummary], None] | None = None):
        self.settings = settings
        self.exchange = exchange
        self.routing_key = routing_key
        self.window = window
        self.rate = rate
        self.progress = progress
        self.summary = PublishSummary()
        self._bodies: Iterator[bytes] = iter(())
        self._exhausted = False
        self._retry: list[bytes] = []
        self._unconfirmed: OrderedDict[int, bytes] = OrderedDict()
        self._sequence = 0
        self._started = 0.0
        self._connection = None
        self._brokers = BrokerRotation(settings)
        self._channel = None
        self._failure = ""
        self._last_progress = 0.0
        self._properties = pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT)
        # Congestion control: the window in force now, and the back-off after nacks.
        self._congestion_window = window
        self._nack_delay = 0.0
        self._paused_until = 0.0

    def publish_all(self, bodies: Iterable[bytes]) -> PublishSummary:
        """Publish everything and return once the broker confirmed every message."""
        self._bodies = iter(bodies)
        self._started = time.monotonic()
        for attempt in range(MAX_RECONNECTS + 1):
            if self._run_connection():
                break
            # Whatever was not confirmed on the lost connection goes out again.
            self._retry = list(self._unconfirmed.values()) + self._retry
            self.summary.resent += len(self._unconfirmed)
            self._unconfirmed.clear()
            log_event(logger, "simulator.reconnect", level=logging.WARNING, attempt=attempt + 1,
                      reason=self._failure[:200])
            time.sleep(RECONNECT_DELAY_SECONDS)
        else:
            raise ConnectionError(f"gave up after {MAX_RECONNECTS} reconnects: {self._failure}")
        self.summary.seconds = time.monotonic() - self._started
        if self.progress:
            self.progress(self.summary)
        return self.summary

    @property
    def _done(self) -> bool:
        return self._exhausted and not self._retry and not self._unconfirmed

    def _run_connection(self) -> bool:
        """Publish on one connection; return True when everything is confirmed."""
        try:
            connect(self.settings).close()  # make sure the topology exists
        except pika.exceptions.AMQPError as error:
            self._failure = repr(error)
            return False
        self._sequence = 0
        # A back-off's wake-up was scheduled on the lost connection's loop.
        self._paused_until = 0.0
        self._connection = CoalescingSelectConnection(
            self._brokers.next_parameters(),
            on_open_callback=lambda connection: connection.channel(on_open_callback=self._on_channel_open),
            on_open_error_callback=self._on_closed,
            on_close_callback=self._on_closed,
        )
        self._connection.ioloop.start()
        return self._done

    def _on_closed(self, connection, reason) -> None:
        self._failure = repr(reason)
        connection.ioloop.stop()

    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(lambda _channel, reason: self._close(repr(reason)))
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _frame: self._pump())

    def _close(self, reason: str = "") -> None:
        self._failure = reason or self._failure
        if not (self._connection.is_closing or self._connection.is_closed):
            self._connection.close()

    def _next_body(self) -> bytes | None:
        if self._retry:
            return self._retry.pop(0)
        if self._exhausted:
            return None
        try:
            return next(self._bodies)
        except StopIteration:
            self._exhausted = True
            return None

    def _allowance(self) -> int:
        """Return how many messages may go out now (window, back-off and rate limit)."""
        if time.monotonic() < self._paused_until:
            return 0
        room = self._congestion_window - len(self._unconfirmed)
        if self.rate:
            due = int(self.rate * (time.monotonic() - self._started)) - self.summary.sent
            room = min(room, due)
        return room

    def _pump(self) -> None:
        if self._channel is None or not self._channel.is_open:
            return
        for _ in range(max(self._allowance(), 0)):
            body = self._next_body()
            if body is None:
                break
            self._channel.basic_publish(self.exchange, self.routing_key, body, self._properties)
            self._sequence += 1
            self._unconfirmed[self._sequence] = body
            self.summary.sent += 1
        if self._done:
            self._close("done")
        elif self.rate and not (self._exhausted and not self._retry):
            self._connection.ioloop.call_later(RATE_TICK_SECONDS, self._pump)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        if method.multiple:
            covered = []
            while self._unconfirmed and next(iter(self._unconfirmed)) <= method.delivery_tag:
                covered.append(self._unconfirmed.popitem(last=False)[1])
        else:
            body = self._unconfirmed.pop(method.delivery_tag, None)
            covered = [] if body is None else [body]
        if isinstance(method, Basic.Ack):
            self.summary.confirmed += len(covered)
            self._congestion_window = min(self.window, self._congestion_window + len(covered))
            self._nack_delay = 0.0
        else:
            self._on_nacked(covered)
        self._report_progress()
        if not self.rate:
            self._pump()
        elif self._done:
            self._close("done")

    def _on_nacked(self, covered: list[bytes]) -> None:
        """Keep refused messages for a retry after a back-off, and shrink the window."""
        self._retry.extend(covered)
        self.summary.nacked += len(covered)
        self._congestion_window = max(1, self._congestion_window // 2)
        now = time.monotonic()
        if now >= self._paused_until:
            # One back-off step per pause: the nacks of a burst arrive in several frames.
            doubled = max(self._nack_delay * 2, NACK_FIRST_DELAY_SECONDS)
            self._nack_delay = min(doubled, NACK_MAX_DELAY_SECONDS)
            self._paused_until = now + self._nack_delay
            self._connection.ioloop.call_later(self._nack_delay, self._pump)

    def _report_progress(self) -> None:
        now = time.monotonic()
        if self.progress and now - self._last_progress > 0.2:
            self._last_progress = now
            self.summary.seconds = now - self._started
            self.progress(self.summary)
