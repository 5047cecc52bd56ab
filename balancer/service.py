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

The balancer routes only to the replicas it hears (common/membership.py):
each announces itself on `ems.control` about once a second. With no replica
alive it stops consuming, and readings wait in `readings.incoming`. The queue
of a replica that left (or died) is an orphan: the balancer consumes it like
`readings.incoming`, routing its readings to the live replicas, and deletes it
once it is empty, unused, and every reading taken from it is acked.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, OrderedDict, deque
from functools import partial

import pika
from pika.spec import Basic

from balancer.stats import DEAD, instance_name, routing_counters
from balancer.strategies import LeastLoaded, Rendezvous, StableHash
from common.amqp import PERSISTENT, BrokerRotation, connect, dead_letter, internal_error_reason
from common.amqp_async import CoalescingSelectConnection
from common.health import HEALTH
from common.logs import log_event
from common.membership import GONE, LIVE_SECONDS, Heartbeat, Membership
from common.messages import InvalidMessage, parse_reading
from common.metrics import READINGS_RECEIVED, READINGS_ROUTED
from common.settings import Settings
from common.topology import (
    BALANCER_MEMBERSHIP_QUEUE_PREFIX,
    BALANCER_STATUS_KEY,
    CLASSIC,
    CONTROL_EXCHANGE,
    INGEST_EXCHANGE,
    MEMBERSHIP_KEYS,
    READINGS_QUEUE,
    ingest_queue,
    ingest_routing_key,
)

logger = logging.getLogger(__name__)

# Readings in flight per balancer: enough to keep the confirm pipeline full.
PREFETCH = 2000
# How often least-loaded asks the broker for the ingest queue depths.
DEPTH_REFRESH_SECONDS = 0.25
# How often the live replica set is looked at (routing follows it within this).
MEMBERSHIP_TICK_SECONDS = 0.5
# Before routing anything, listen this long: the replicas' heartbeats come every second.
STARTUP_LISTEN_SECONDS = 1.2
# How often the queues of replicas that are not live are looked at, and how many
# looks in a row must find one empty and unused before it is deleted.
ORPHAN_SCAN_SECONDS = 2.0
ORPHAN_EMPTY_LOOKS = 3
# Heartbeats older than this are of no use: the replica may be gone since.
HEARTBEAT_TTL_MS = 3000
# The view of the replicas for the Pipeline page: this often, rates over the last minute,
# a replica whose queue was deleted shown as gone for a minute; a snapshot of a balancer
# that stopped expires.
STATUS_SECONDS = 2.0
RATE_WINDOW_SECONDS = 60.0
STATUS_TTL_MS = "10000"

PENDING, DONE, NACKED = "pending", "done", "nacked"


class RoutingCounters:
    """Readings routed per replica (key 0: dead-lettered), confirmed by the broker."""

    def __init__(self, replicas: int):
        self.counts = {replica: 0 for replica in range(0, replicas + 1)}

    def add(self, replica: int) -> None:
        """Count one confirmed reading for `replica` (0 for a dead letter); replicas may join."""
        self.counts[replica] = self.counts.get(replica, 0) + 1
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
        # Each life of the balancer connects to the next broker: a lost one is not tried first again.
        self._brokers = BrokerRotation(settings)
        self._broker: pika.URLParameters | None = None
        self._channel = None
        self._publish_channel = None
        self._tracker = ConfirmTracker()
        self._returned: dict[int, bytes] = {}  # sequence -> body
        self._close_reason = ""
        self.membership = Membership()
        # The queues declared from the start (EMS_MONITOR_REPLICAS): orphans until heard.
        self._configured = set(strategy.members)
        self._gone: dict[int, float] = {}  # replica -> when its queue was deleted
        self._samples: deque[tuple[float, dict[int, int]]] = deque()  # (when, routed per replica)
        # Devices by the replica they were last routed to (hash strategies: a device has one).
        self._device_replicas: dict[str, int] | None = \
            {} if isinstance(strategy, (StableHash, Rendezvous)) else None
        self._reset_routing_state()

    def _reset_routing_state(self) -> None:
        """Forget what belonged to the last connection (its deliveries went back to their queues)."""
        self._readings_consumer: str | None = None
        self._listening_since: float | None = None
        self._drains: dict[str, int] = {}  # consumer tag -> replica whose orphan queue it empties
        self._drain_last_tag: dict[int, int] = {}  # replica -> last delivery tag taken from its queue
        self._acked_through = 0
        self._empty_looks: dict[int, int] = {}
        self._last_scan = 0.0
        self._probe_channel = None
        self._probes: list = []  # (operation, queue, callback), done one at a time
        self._probing = None
        self._scanning = self._refreshing_depths = False
        self._control_channel = None
        self._last_status = 0.0

    # --- connection life ---------------------------------------------------

    def run(self) -> None:
        """Connect, consume until the connection closes; raise ConnectionError unless stopped."""
        connect(self.settings).close()  # declare the topology once per connection
        self._tracker = ConfirmTracker()
        self._returned = {}
        self._connection = None
        self._close_reason = ""
        self._reset_routing_state()
        self._broker = self._brokers.next_parameters()
        self._publish_connection = CoalescingSelectConnection(
            self._broker,
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
        connection.channel(on_open_callback=self._on_control_channel_open)
        connection.channel(on_open_callback=self._on_probe_channel_open)

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
            self._broker,
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
        # Routing starts at the first membership tick that finds a live replica.
        self._publish_connection.ioloop.call_later(MEMBERSHIP_TICK_SECONDS, self._on_membership_tick)
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
        replica = self._drains.get(method.consumer_tag)
        if replica is not None:
            self._drain_last_tag[replica] = method.delivery_tag
        try:
            reading = parse_reading(body, max_future_ms=self.max_future_ms)
            replica = self.strategy.choose(reading.device_id)
            if self._device_replicas is not None:
                self._device_replicas[reading.device_id] = replica
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
            # The timestamp tells the replica how long the reading waited in its queue (lag).
            properties=pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT,
                                            message_id=str(sequence), timestamp=int(time.time())),
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
                self._acked_through = tag
                HEALTH.acked(still_holding=self._tracker.outstanding > 0)
            else:
                self._channel.basic_nack(tag, requeue=True)


    # --- membership: which replicas to route to --------------------------

    def _on_control_channel_open(self, channel) -> None:
        self._control_channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        queue = BALANCER_MEMBERSHIP_QUEUE_PREFIX + instance_name()
        channel.queue_declare(queue, exclusive=True, auto_delete=True,
                              arguments={"x-message-ttl": HEARTBEAT_TTL_MS},
                              callback=lambda _frame: channel.queue_bind(
                                  queue, CONTROL_EXCHANGE, MEMBERSHIP_KEYS,
                                  callback=lambda _frame: self._listen(channel, queue)))

    def _listen(self, channel, queue: str) -> None:
        channel.basic_consume(queue, self._on_heartbeat, auto_ack=True)
        self._listening_since = time.monotonic()

    def _on_heartbeat(self, channel, method, properties, body: bytes) -> None:
        try:
            heartbeat = Heartbeat.from_json(body)
        except ValueError:
            log_event(logger, "balancer.bad_heartbeat", level=logging.WARNING, routing_key=method.routing_key)
            return
        self.membership.heard(heartbeat, time.monotonic())

    def _on_membership_tick(self) -> None:
        """Route over the live replicas; consume readings only while there is one."""
        if self._channel is None or not self._channel.is_open:
            return
        now = time.monotonic()
        live = self.membership.live(now)
        if live and live != self.strategy.members:
            # A replica that left or fell silent is worth a warning; one that joined is not.
            shrunk = not set(self.strategy.members) <= set(live)
            self.strategy.set_replicas(live)
            log_event(logger, "balancer.replicas", level=logging.WARNING if shrunk else logging.INFO,
                      live=",".join(map(str, live)))
        listened_enough = self._listening_since is not None and \
            now - self._listening_since >= STARTUP_LISTEN_SECONDS
        if live and listened_enough and self._readings_consumer is None:
            self._readings_consumer = self._channel.basic_consume(READINGS_QUEUE, self._on_reading)
        elif not live and self._readings_consumer is not None:
            log_event(logger, "balancer.no_live_replica", level=logging.WARNING)
            self._channel.basic_cancel(self._readings_consumer)
            self._readings_consumer = None
        least_loaded = isinstance(self.strategy, LeastLoaded)
        if least_loaded and live and not self._refreshing_depths:
            self._refresh_depths(live)
        # A queue is an orphan only once its replica had time to be heard.
        heard_enough = listened_enough and now - self._listening_since >= LIVE_SECONDS
        if heard_enough and not self._scanning and now - self._last_scan >= ORPHAN_SCAN_SECONDS:
            self._last_scan = now
            self._scan_orphans(live)
        if now - self._last_status >= STATUS_SECONDS:
            self._last_status = now
            self._publish_status(now)
        self._publish_connection.ioloop.call_later(
            DEPTH_REFRESH_SECONDS if least_loaded else MEMBERSHIP_TICK_SECONDS, self._on_membership_tick)

    # --- queues of replicas that left ------------------------------------

    def _scan_orphans(self, live: tuple[int, ...]) -> None:
        """Look at the queue of every replica known but not live: empty it, then delete it."""
        known = self.membership.known() | self._configured | set(self._drains.values())
        orphans = sorted(known - set(live))
        if not orphans:
            return
        self._scanning = True
        for replica in orphans:
            self._probe("declare", ingest_queue(replica), partial(self._on_orphan_looked_at, replica, live))
        self._probe("declare", READINGS_QUEUE, lambda _answer: setattr(self, "_scanning", False))

    def _on_orphan_looked_at(self, replica: int, live: tuple[int, ...], answer) -> None:
        drain = next((tag for tag, drained in self._drains.items() if drained == replica), None)
        if answer is None:  # no such queue (any more)
            self.membership.forget(replica)
            self._configured.discard(replica)
            return
        if replica in self.membership.live(time.monotonic()):  # it came back
            if drain:
                self._stop_draining(drain)
            return
        if answer.message_count:
            self._empty_looks[replica] = 0
            if drain is None and live:
                tag = self._channel.basic_consume(ingest_queue(replica), self._on_reading)
                self._drains[tag] = replica
                log_event(logger, "balancer.orphan_draining", replica=replica, waiting=answer.message_count)
            return
        if drain:
            self._stop_draining(drain)
            return
        # Readings taken from the queue but not acked yet would be lost with it.
        settled = self._acked_through >= self._drain_last_tag.get(replica, 0)
        if answer.consumer_count or not settled:
            self._empty_looks[replica] = 0
            return
        self._empty_looks[replica] = self._empty_looks.get(replica, 0) + 1
        if self._empty_looks[replica] >= ORPHAN_EMPTY_LOOKS:
            self._delete_orphan(replica)

    def _delete_orphan(self, replica: int) -> None:
        queue = ingest_queue(replica)
        if self.settings.queue_type == CLASSIC:
            self._probe("delete", queue, partial(self._on_orphan_deleted, replica))
            return
        # A quorum queue refuses a delete "if empty and unused" (RabbitMQ 3.10): unbound
        # first, no reading can land in it any more, and one last look decides.
        self._probe("unbind", queue, lambda _answer: None)
        self._probe("declare", queue, partial(self._on_unbound_orphan_looked_at, replica))

    def _on_unbound_orphan_looked_at(self, replica: int, answer) -> None:
        if answer is None:  # gone already
            self._on_orphan_looked_at(replica, (), None)
        elif (answer.message_count or answer.consumer_count
              or replica in self.membership.live(time.monotonic())):
            # Its replica or readings came back in the meantime: keep the queue, routed to again.
            self._empty_looks[replica] = 0
            self._probe("bind", ingest_queue(replica), lambda _answer: None)
        else:
            self._probe("delete-looked-at", ingest_queue(replica), partial(self._on_orphan_deleted, replica))

    def _stop_draining(self, tag: str) -> None:
        replica = self._drains.pop(tag)
        self._empty_looks[replica] = 0
        if self._channel is not None and self._channel.is_open:
            self._channel.basic_cancel(tag)

    def _on_orphan_deleted(self, replica: int, answer) -> None:
        self._empty_looks.pop(replica, None)
        if answer is None:  # refused (not empty, or a consumer came): look again later
            return
        self.membership.forget(replica)
        self._configured.discard(replica)
        self._drain_last_tag.pop(replica, None)
        self._gone[replica] = time.monotonic()
        log_event(logger, "balancer.orphan_deleted", queue=ingest_queue(replica))

    # --- the view of the replicas for the Pipeline page ----------------------

    def status(self, now: float) -> dict:
        """Return the replicas as this balancer sees them: state, readings/s, lag, devices."""
        counts = self.counters.snapshot()
        self._samples.append((now, counts))
        while now - self._samples[0][0] > RATE_WINDOW_SECONDS:
            self._samples.popleft()
        since, before = self._samples[0]
        seconds = max(now - since, 1e-9)
        for replica, deleted_at in list(self._gone.items()):
            if now - deleted_at > RATE_WINDOW_SECONDS:
                del self._gone[replica]
        devices = Counter(self._device_replicas.values()) if self._device_replicas is not None else None
        replicas = sorted(self.membership.known() | set(self._gone) | set(self.strategy.members))
        return {
            "instance": instance_name(),
            "strategy": self.strategy.name,
            "sent_at": int(time.time() * 1000),
            **routing_counters(counts),
            "replicas": [{
                "replica": replica,
                "state": GONE if replica in self._gone and replica not in self.membership.known()
                else self.membership.state(replica, now),
                "readings_per_second": round((counts.get(replica, 0) - before.get(replica, 0)) / seconds, 1)
                if len(self._samples) > 1 else 0.0,
                "lag_seconds": self.membership.lag_seconds.get(replica),
                "devices": devices.get(replica, 0) if devices is not None else None,
            } for replica in replicas],
        }

    def _publish_status(self, now: float) -> None:
        if self._control_channel is None or not self._control_channel.is_open:
            return
        self._control_channel.basic_publish(
            CONTROL_EXCHANGE, BALANCER_STATUS_KEY, json.dumps(self.status(now)).encode(),
            pika.BasicProperties(content_type="application/json", expiration=STATUS_TTL_MS))

    # --- passive declares and deletes, one at a time on a channel of their own ---

    def _on_probe_channel_open(self, channel) -> None:
        self._probe_channel = channel
        channel.add_on_close_callback(self._on_probe_channel_closed)
        self._next_probe()

    def _on_probe_channel_closed(self, channel, reason) -> None:
        # The broker closes the channel on a declare of a missing queue (404) or a
        # refused delete (406): that is the answer; go on with a fresh channel.
        self._probe_channel = None
        if self._probing is not None:
            _operation, _queue, callback = self._probing
            self._probing = None
            callback(None)
        if self._connection is not None and self._connection.is_open and not self.stopping:
            self._connection.channel(on_open_callback=self._on_probe_channel_open)

    def _probe(self, operation: str, queue: str, callback) -> None:
        """Queue an operation on `queue`: a passive declare ("declare"), a delete if empty and unused
        ("delete"), a delete of a queue just seen empty and unbound ("delete-looked-at"), or a
        "bind"/"unbind" of an ingest queue to its replica's routing key."""
        self._probes.append((operation, queue, callback))
        self._next_probe()

    def _next_probe(self) -> None:
        if self._probing is not None or not self._probes or self._probe_channel is None:
            return
        self._probing = operation, queue, _callback = self._probes.pop(0)
        channel, answer = self._probe_channel, self._on_probe_answer
        if operation == "declare":
            channel.queue_declare(queue, passive=True, callback=answer)
        elif operation == "delete":
            channel.queue_delete(queue, if_unused=True, if_empty=True, callback=answer)
        elif operation == "delete-looked-at":
            channel.queue_delete(queue, callback=answer)
        else:
            key = ingest_routing_key(int(queue.rsplit(".", 1)[1]))
            bind = channel.queue_bind if operation == "bind" else channel.queue_unbind
            bind(queue, INGEST_EXCHANGE, routing_key=key, callback=answer)

    def _on_probe_answer(self, frame) -> None:
        _operation, _queue, callback = self._probing
        self._probing = None
        callback(frame.method)
        self._next_probe()

    # --- queue depths for least-loaded -------------------------------------

    def _refresh_depths(self, live: tuple[int, ...]) -> None:
        self._refreshing_depths = True
        depths: dict[int, int] = {}

        def on_depth(replica: int, answer) -> None:
            # Apply the depths together: resetting one replica's estimate before the
            # others' would send it every reading until their answers arrive.
            depths[replica] = answer.message_count if answer is not None else 0
            if len(depths) == len(live):
                self.strategy.observe_depths(depths)
                self._refreshing_depths = False

        for replica in live:
            self._probe("declare", ingest_queue(replica), partial(on_depth, replica))
