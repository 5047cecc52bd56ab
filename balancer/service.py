"""The load balancer: consume `readings.incoming`, validate, route to one replica's ingest queue.

An asynchronous pika connection (SelectConnection) lets many republishes be in
flight at once: the broker confirms them in batches (`multiple`), and only then
are the original deliveries acked, again in one `multiple` ack for the longest
settled run. Nothing is acked before its republish (or dead letter) is
confirmed, so a crash at any moment loses nothing; it may only repeat readings,
which the replicas store idempotently. Republishes go out on a connection of
their own, sharing the consuming connection's I/O loop: a broker that blocks
publishers under a memory or disk alarm holds the republishes back, never the
acks of what is already confirmed. Nothing raises out of the delivery
callback (that would drop the connection and bring the same message back for
ever): an invalid reading, or one that breaks the code, is dead-lettered.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from functools import partial

import pika
from pika.spec import Basic

from balancer.strategies import LeastLoaded
from common.amqp import PERSISTENT, connect, connection_parameters, dead_letter, internal_error_reason
from common.amqp_async import CoalescingSelectConnection
from common.health import HEALTH
from common.logs import log_event
from common.messages import InvalidMessage, parse_reading
from common.metrics import READINGS_RECEIVED, READINGS_ROUTED
from common.settings import Settings
from common.topology import INGEST_EXCHANGE, READINGS_QUEUE, ingest_queue, ingest_routing_key

logger = logging.getLogger(__name__)

# Readings in flight per balancer: enough to keep the confirm pipeline full.
PREFETCH = 2000
# How often least-loaded asks the broker for the ingest queue depths.
DEPTH_REFRESH_SECONDS = 0.25
DEAD = 0  # the counter key of dead-lettered readings

PENDING, DONE, NACKED = "pending", "done", "nacked"


class RoutingCounters:
    """Readings routed per replica (key 0: dead-lettered), confirmed by the broker."""

    def __init__(self, replicas: int):
        self.counts = {replica: 0 for replica in range(0, replicas + 1)}

    def add(self, replica: int) -> None:
        """Count one confirmed reading for `replica` (0 for a dead letter)."""
        self.counts[replica] += 1
        if replica != DEAD:
            READINGS_ROUTED.labels(replica=str(replica)).inc()

    def snapshot(self) -> dict[int, int]:
        """Return a copy that another thread may read."""
        return dict(self.counts)


class ConfirmTracker:
    """Map broker confirms of republished messages back to the original deliveries.

    Each delivery is settled once every message published for it is confirmed.
    `settle` returns what to do, in delivery order: ack a run of settled
    deliveries with one `multiple` ack, nack (requeue) a refused one.
    """

    def __init__(self):
        self._next_sequence = 0
        self._in_flight: OrderedDict[int, tuple[int, int]] = OrderedDict()  # sequence -> (tag, target)
        self._deliveries: OrderedDict[int, str] = OrderedDict()  # delivery tag -> state

    def published(self, delivery_tag: int, target: int) -> int:
        """Record one publish for a delivery; return its confirm sequence number."""
        self._next_sequence += 1
        self._in_flight[self._next_sequence] = (delivery_tag, target)
        self._deliveries.setdefault(delivery_tag, PENDING)
        return self._next_sequence

    @property
    def next_sequence(self) -> int:
        return self._next_sequence + 1

    def confirmed(self, sequence: int, multiple: bool, ack: bool) -> list[tuple[int, int, int]]:
        """Take a broker ack or nack; return the (sequence, delivery tag, target) it covers."""
        covered = []
        if multiple:
            while self._in_flight and next(iter(self._in_flight)) <= sequence:
                seq, (tag, target) = self._in_flight.popitem(last=False)
                covered.append((seq, tag, target))
        elif sequence in self._in_flight:
            tag, target = self._in_flight.pop(sequence)
            covered.append((sequence, tag, target))
        for _, tag, _ in covered:
            self._deliveries[tag] = DONE if ack else NACKED
        return covered

    def reopen(self, delivery_tag: int) -> None:
        """Mark a delivery pending again (its message must be published once more)."""
        self._deliveries[delivery_tag] = PENDING

    def settle(self) -> list[tuple[str, int]]:
        """Return the actions for the settled prefix: ("ack", last tag) or ("nack", tag)."""
        actions = []
        last_done = None
        while self._deliveries:
            tag, state = next(iter(self._deliveries.items()))
            if state == PENDING:
                break
            self._deliveries.popitem(last=False)
            if state == DONE:
                last_done = tag
            else:
                if last_done is not None:
                    actions.append(("ack", last_done))
                    last_done = None
                actions.append(("nack", tag))
        if last_done is not None:
            actions.append(("ack", last_done))
        return actions

    @property
    def outstanding(self) -> int:
        return len(self._deliveries)


class Balancer:
    """One connection's life of the balancer; `run` again after it is lost."""

    def __init__(self, settings: Settings, strategy, counters: RoutingCounters):
        self.settings = settings
        self.strategy = strategy
        self.counters = counters
        self.max_future_ms = settings.max_clock_skew_seconds * 1000
        self.stopping = False
        # Consuming (and acks) on one connection, republishing on another.
        self._connection: CoalescingSelectConnection | None = None
        self._publish_connection: CoalescingSelectConnection | None = None
        self._channel = None
        self._publish_channel = None
        self._depth_channel = None
        self._tracker = ConfirmTracker()
        self._returned: dict[int, bytes] = {}  # sequence -> body
        self._close_reason = ""

    # --- connection life ---------------------------------------------------

    def run(self) -> None:
        """Connect, consume until the connection closes; raise ConnectionError unless stopped."""
        connect(self.settings).close()  # declare the topology once per connection
        self._tracker = ConfirmTracker()
        self._returned = {}
        self._connection = None
        self._close_reason = ""
        self._publish_connection = CoalescingSelectConnection(
            connection_parameters(self.settings),
            on_open_callback=self._on_publish_connection_open,
            on_open_error_callback=self._on_connection_open_error,
            on_close_callback=self._on_connection_closed,
        )
        self._publish_connection.ioloop.start()
        if not self.stopping:
            raise ConnectionError(f"balancer connection lost: {self._close_reason}")

    def stop(self) -> None:
        """Stop consuming and close; safe to call from a signal handler."""
        self.stopping = True
        connection = self._publish_connection
        if connection is not None:
            connection.ioloop.add_callback_threadsafe(self._close)

    def _connections(self) -> list[CoalescingSelectConnection]:
        return [c for c in (self._connection, self._publish_connection) if c is not None]

    def _close(self) -> None:
        """Close both connections; the I/O loop stops once both are closed."""
        for connection in self._connections():
            if not (connection.is_closing or connection.is_closed):
                connection.close()

    def _on_publish_connection_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_publish_channel_open)

    def _on_connection_open(self, connection) -> None:
        log_event(logger, "balancer.connected", strategy=self.strategy.name,
                  replicas=self.strategy.replicas)
        connection.channel(on_open_callback=self._on_channel_open)
        if isinstance(self.strategy, LeastLoaded):
            connection.channel(on_open_callback=self._on_depth_channel_open)

    def _on_connection_open_error(self, connection, error) -> None:
        self._on_connection_closed(connection, error)

    def _on_connection_closed(self, connection, reason) -> None:
        # Either connection lost ends this life of the balancer: close the other too.
        self._close_reason = self._close_reason or repr(reason)
        self._close()
        if all(c.is_closed for c in self._connections()):
            connection.ioloop.stop()

    def _on_channel_closed(self, channel, reason) -> None:
        # A channel closed by the broker means something is wrong (e.g. a queue
        # deleted): start over on a fresh connection rather than limp on.
        self._close_reason = repr(reason)
        if not self.stopping:
            log_event(logger, "balancer.channel_closed", level=logging.WARNING, reason=repr(reason))
        self._close()

    # --- consuming and routing ---------------------------------------------

    def _on_publish_channel_open(self, channel) -> None:
        self._publish_channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame) -> None:
        # Republishing is ready: now open the consuming connection, on the same I/O loop.
        self._connection = CoalescingSelectConnection(
            connection_parameters(self.settings),
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self._publish_connection.ioloop,
        )

    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.basic_qos(prefetch_count=PREFETCH, callback=self._on_qos)

    def _on_qos(self, _frame) -> None:
        self._channel.basic_consume(READINGS_QUEUE, self._on_reading)
        HEALTH.set_ready(True)
        self._beat()

    def _beat(self) -> None:
        """Tell the health check, every second, that the I/O loop still turns."""
        HEALTH.turned()
        if self._connection is not None and self._connection.is_open:
            self._connection.ioloop.call_later(1.0, self._beat)

    def _on_reading(self, channel, method, properties, body: bytes) -> None:
        READINGS_RECEIVED.inc()
        HEALTH.received()
        try:
            reading = parse_reading(body, max_future_ms=self.max_future_ms)
            replica = self.strategy.choose(reading.device_id)
        except InvalidMessage as error:
            self._publish_dead_letter(method.delivery_tag, method.routing_key, body, str(error), properties)
            return
        except Exception as error:  # noqa: BLE001 - last resort: raising here would drop the connection
            log_event(logger, "balancer.reading_crashed", level=logging.ERROR, exc_info=True,
                      message_id=properties.message_id)
            self._publish_dead_letter(method.delivery_tag, method.routing_key, body,
                                      internal_error_reason(error), properties)
            return
        sequence = self._tracker.next_sequence
        self._publish_channel.basic_publish(
            exchange=INGEST_EXCHANGE,
            routing_key=ingest_routing_key(replica),
            # The body is valid as it is; re-encoding every reading only costs CPU.
            body=body,
            # The message id carries the confirm sequence, so that a returned
            # (unroutable) message can be matched to its delivery.
            properties=pika.BasicProperties(content_type="application/json",
                                            delivery_mode=PERSISTENT, message_id=str(sequence)),
            mandatory=True,
        )
        self._tracker.published(method.delivery_tag, replica)

    def _publish_dead_letter(self, delivery_tag: int, routing_key: str, body: bytes, reason: str,
                             properties) -> None:
        dead_letter(self._publish_channel, READINGS_QUEUE, routing_key, body, reason, properties)
        self._tracker.published(delivery_tag, DEAD)
        log_event(logger, "balancer.dead_lettered", level=logging.WARNING, reason=reason[:200])

    def _on_return(self, channel, method, properties, body: bytes) -> None:
        # Returned messages arrive before their confirm; remember them so the
        # confirm dead-letters the reading instead of acking it.
        if properties.message_id and properties.message_id.isdigit():
            self._returned[int(properties.message_id)] = body
        log_event(logger, "balancer.unroutable", level=logging.ERROR, exchange=method.exchange,
                  routing_key=method.routing_key)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        ack = isinstance(method, Basic.Ack)
        for sequence, tag, target in self._tracker.confirmed(method.delivery_tag, method.multiple, ack):
            if ack and sequence in self._returned:
                body = self._returned.pop(sequence)
                self._tracker.reopen(tag)
                self._publish_dead_letter(tag, "reading", body, "unroutable: no ingest queue bound",
                                          properties=None)
            elif ack:
                self.counters.add(target)
        for action, tag in self._tracker.settle():
            if action == "ack":
                self._channel.basic_ack(tag, multiple=True)
                HEALTH.acked(still_holding=self._tracker.outstanding > 0)
            else:
                self._channel.basic_nack(tag, requeue=True)

    # --- queue depths for least-loaded -------------------------------------

    def _on_depth_channel_open(self, channel) -> None:
        self._depth_channel = channel
        self._depths: dict[int, int] = {}
        self._refresh_depths()

    def _refresh_depths(self) -> None:
        if self._depth_channel is None or not self._depth_channel.is_open:
            return
        for replica in range(1, self.strategy.replicas + 1):
            self._depth_channel.queue_declare(ingest_queue(replica), passive=True,
                                              callback=partial(self._on_depth, replica))
        self._publish_connection.ioloop.call_later(DEPTH_REFRESH_SECONDS, self._refresh_depths)

    def _on_depth(self, replica: int, frame) -> None:
        # Apply the depths together: resetting one replica's estimate before the
        # others' would send it every reading until their answers arrive.
        self._depths[replica] = frame.method.message_count
        if len(self._depths) == self.strategy.replicas:
            self.strategy.observe_depths(self._depths)
            self._depths = {}
