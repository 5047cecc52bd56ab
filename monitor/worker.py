"""A monitoring replica: consume `ingest.<n>`, store readings in batches, publish alerts.

Two blocking connections, one for consuming and one for publishing (dead
letters, alerts), so that a broker that blocks publishers under a memory or
disk alarm never stops the acks. The consumer callback only collects
deliveries into the open batch while `process_data_events` services the
connections; a batch closes at BATCH_SIZE deliveries or BATCH_WAIT_SECONDS
after its first one and is stored outside any callback, on a storage thread,
while this thread keeps servicing both connections: a slow or locked database
costs time, not the heartbeats. Deliveries are acked with one `multiple` ack only
after the transaction committed.

Nothing that arrives can stop a replica: an invalid reading, a conflicting
duplicate, one the database refuses for good (the batch is split until that
reading stands alone) or one that breaks the code is dead-lettered with its
reason. Only transient faults (the database away, a lock race) are retried,
after a back-off on a fresh connection.

A replica declares its own queue and announces itself on `ems.control` about
once a second, which is how the balancer learns that it may route to it
(common/membership.py). Told to stop, it announces `draining`, so the
balancer routes elsewhere at once, works its queue empty (for at most
DRAIN_SECONDS) and leaves with status 0; whatever is still there the balancer
moves to the live replicas. A second signal stops it at once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pika
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from common.amqp import CONNECTION_ERRORS, connect, dead_letter, internal_error_reason
from common.db import blames_the_message, database_error_code, refusal_reason
from common.health import HEALTH, consumer_stalled
from common.logs import log_event
from common.membership import ACTIVE, DRAINING, Heartbeat
from common.messages import InvalidMessage, Reading, parse_reading
from common.metrics import count_stored_batch
from common.settings import Settings
from common.topology import (
    CONTROL_EXCHANGE,
    QueueOptions,
    declare_queue,
    ingest_queue,
    ingest_queue_definition,
    membership_routing_key,
)
from monitor.alerts import crash_if_fault_injected, publish_pending_alerts
from monitor.maintenance import TOO_OLD, retention_cutoff_ms, too_old_reason
from monitor.storage import BatchResult, count_too_old, store_readings
from monitor.warnings import WarningRule

logger = logging.getLogger(__name__)

PREFETCH = 2000
BATCH_SIZE = 1000
BATCH_WAIT_SECONDS = 0.05
# How long an idle replica sleeps in the broker connection (also bounds the stop delay).
IDLE_WAIT_SECONDS = 1.0
# Unpublished alerts of a replica that died are picked up by the others this often.
ALERT_SWEEP_SECONDS = 5.0
# While a batch is being stored the connections are serviced at least this often.
SERVICE_WHILE_STORING_SECONDS = 1.0
# How often a replica tells the balancer it is alive (the balancer gives up after 4 s).
HEARTBEAT_SECONDS = 0.5
# A stopping replica works its queue this long at most; the balancer moves what is left.
DRAIN_SECONDS = 8.0
# ... and leaves once its queue stayed empty this long (readings routed before the
# balancer heard `draining` may still be on their way).
DRAIN_QUIET_SECONDS = 0.5
CONFLICTING_DUPLICATE_REASON = ("conflicting-duplicate: this device and timestamp were stored before "
                                "with another value, which stands")


class DatabaseUnavailable(ConnectionError):
    """The database failed; start over on a fresh connection after a back-off."""


class IngestWorker:
    """One connection's life of monitor replica `replica`; `run` again after it is lost."""

    def __init__(self, settings: Settings, engine: Engine, replica: int):
        self.settings = settings
        self.engine = engine
        self.replica = replica
        self.queue = ingest_queue(replica)
        self.max_future_ms = settings.max_clock_skew_seconds * 1000
        self.warning_rule = WarningRule.from_settings(settings)
        self.stopping = False
        self._connection: pika.BlockingConnection | None = None
        self._publish_connection: pika.BlockingConnection | None = None
        self._consume_channel = None
        self._storage = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"storage-{replica}")
        self._publish_channel = None
        self._last_sweep = 0.0
        self._batch: list = []
        self._batch_started = 0.0
        self.instance = f"{socket.gethostname()}-{os.getpid()}"
        self._drain_deadline: float | None = None  # set once told to stop
        self._empty_since: float | None = None
        self._last_heartbeat = 0.0
        self._lag_seconds = 0.0  # of the first reading of the last batch; 0 once idle

    def stop(self) -> None:
        """Drain the queue and leave; a second call leaves after the current batch (signal handler)."""
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + DRAIN_SECONDS
            self._last_heartbeat = 0.0  # say `draining` at the next turn
        else:
            self.stopping = True

    def run(self) -> None:
        """Consume until stopped; raise a connection error when the broker or database fails."""
        self._open()
        try:
            self._sweep_alerts()
            HEALTH.set_ready(True)  # the broker and the database both answered
            self._consume()
        finally:
            self._close()

    def _open(self) -> None:
        self._connection = connect(self.settings)
        self._consume_channel = self._connection.channel()
        self._consume_channel.basic_qos(prefetch_count=PREFETCH)
        # Dead letters and alerts go out on a connection of their own, in confirm mode.
        self._publish_connection = connect(self.settings, declare=False)
        self._publish_channel = self._publish_connection.channel()
        self._publish_channel.confirm_delivery()
        log_event(logger, "monitor.worker_connected", replica=self.replica, queue=self.queue)

    def _close(self) -> None:
        connections = (self._connection, self._publish_connection)
        self._connection = self._publish_connection = None
        for connection in connections:
            if connection is not None and connection.is_open:
                try:
                    connection.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass

    def _consume(self) -> None:
        self._batch = []
        # Any replica number may join: its queue is there before the balancer hears of it.
        # Declared right before consuming: the balancer deletes an orphan queue that is empty
        # and unused (a delete in between makes the consume fail, and the reconnect declares again).
        declare_queue(self._consume_channel,
                      ingest_queue_definition(self.replica, QueueOptions.from_settings(self.settings)))
        consumer_tag = self._consume_channel.basic_consume(self.queue, self._on_delivery)
        while not self.stopping:
            HEALTH.turned()
            # Deliveries land in the batch through _on_delivery while pika services the
            # connection (heartbeats included); storing happens here, outside callbacks.
            self._connection.process_data_events(time_limit=self._wait_seconds())
            self._publish_connection.process_data_events(time_limit=0)
            self._announce()
            if self._batch_due():
                self._flush()
            elif not self._batch and time.monotonic() - self._last_sweep > ALERT_SWEEP_SECONDS:
                self._sweep_alerts()
            if self._drain_deadline is not None and self._drained():
                self.stopping = True
        self._flush()
        self._consume_channel.basic_cancel(consumer_tag)

    def _announce(self) -> None:
        """Publish a heartbeat when one is due: `active`, or `draining` once told to stop."""
        now = time.monotonic()
        if now - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = now
        state = ACTIVE if self._drain_deadline is None else DRAINING
        lag, self._lag_seconds = self._lag_seconds, 0.0
        # Not persistent and not routed anywhere when no balancer listens: a lost
        # heartbeat only means the next one counts.
        self._publish_channel.basic_publish(
            CONTROL_EXCHANGE, membership_routing_key(self.replica),
            Heartbeat(self.replica, state, self.instance, round(lag, 1)).to_json(),
            pika.BasicProperties(content_type="application/json", expiration="3000"))

    def _drained(self) -> bool:
        """Return True once the queue stayed empty a moment (or the drain time is up)."""
        now = time.monotonic()
        if now > self._drain_deadline:
            log_event(logger, "monitor.drain_timed_out", level=logging.WARNING, replica=self.replica)
            return True
        waiting = self._consume_channel.queue_declare(self.queue, passive=True).method.message_count
        if self._batch or waiting:
            self._empty_since = None
            return False
        self._empty_since = self._empty_since or now
        if now - self._empty_since < DRAIN_QUIET_SECONDS:
            return False
        log_event(logger, "monitor.drained", replica=self.replica)
        return True

    def _on_delivery(self, channel, method, properties, body: bytes) -> None:
        HEALTH.received()
        if consumer_stalled():
            return  # test-only fault: hold the delivery unacked, as a consumer stuck in its work would
        if not self._batch:
            self._batch_started = time.monotonic()
            if properties.timestamp:  # stamped by the balancer when it routed the reading
                self._lag_seconds = max(self._lag_seconds, time.time() - properties.timestamp)
        self._batch.append((method, properties, body))

    def _wait_seconds(self) -> float:
        """Return how long to wait for deliveries: until the open batch is due, or a while."""
        if not self._batch:
            # A draining replica looks at its queue often: it leaves once that is empty.
            return IDLE_WAIT_SECONDS if self._drain_deadline is None else DRAIN_QUIET_SECONDS / 2
        return max(0.0, BATCH_WAIT_SECONDS - (time.monotonic() - self._batch_started))

    def _batch_due(self) -> bool:
        return bool(self._batch) and (len(self._batch) >= BATCH_SIZE
                                      or time.monotonic() - self._batch_started >= BATCH_WAIT_SECONDS)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._process(batch)

    def _process(self, batch: list) -> None:
        """Store a batch, dead-letter what cannot be stored, then ack it all at once."""
        readings, rejected = self._parse(batch)
        self._count_too_old(sum(1 for _, reason in rejected if reason.startswith(TOO_OLD)))
        stored, refused = self._store(readings)
        for delivery, reason in rejected + refused:
            method, properties, body = delivery
            dead_letter(self._publish_channel, self.queue, method.routing_key, body, reason, properties)
            log_event(logger, "monitor.dead_lettered", level=logging.WARNING, replica=self.replica,
                      message_id=properties.message_id, reason=reason[:200])
        self._consume_channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)
        HEALTH.acked(still_holding=bool(self._batch))
        count_stored_batch(self.replica, len(batch), [reading.timestamp for _, reading in readings], stored)
        if stored.alerts or stored.warnings:
            log_event(logger, "monitor.alerts_raised", replica=self.replica, count=stored.alerts,
                      warnings=stored.warnings)
            crash_if_fault_injected()
            self._sweep_alerts()

    def _parse(self, batch: list) -> tuple[list[tuple[tuple, Reading]], list[tuple[tuple, str]]]:
        """Return the batch's valid readings with their deliveries, and the rejected deliveries."""
        readings, rejected = [], []
        retention_days = self.settings.raw_retention_days
        oldest_ms = retention_cutoff_ms(int(time.time() * 1000), retention_days)
        for delivery in batch:
            try:
                reading = parse_reading(delivery[2], max_future_ms=self.max_future_ms)
                if reading.timestamp < oldest_ms:
                    raise InvalidMessage(too_old_reason(reading.timestamp, retention_days))
                readings.append((delivery, reading))
            except InvalidMessage as error:
                rejected.append((delivery, str(error)))
            except Exception as error:  # noqa: BLE001 - last resort: one message must not stop the queue
                log_event(logger, "monitor.parse_crashed", level=logging.ERROR, exc_info=True,
                          message_id=delivery[1].message_id)
                rejected.append((delivery, internal_error_reason(error)))
        return readings, rejected

    def _count_too_old(self, count: int) -> None:
        """Count readings refused as older than the retention window (for the Pipeline page)."""
        if not count:
            return
        try:
            self._while_serving_connections(count_too_old, self.engine, self.replica, count)
        except DBAPIError as error:
            raise DatabaseUnavailable(f"counting too-old readings failed: {type(error).__name__}") from error

    def _store(self, readings: list[tuple[tuple, Reading]]) -> tuple[BatchResult, list[tuple[tuple, str]]]:
        """Store readings; return the totals and the deliveries refused with a reason.

        A batch that the database refuses for a reason in its data is split in halves
        until the one reading at fault stands alone; the others are stored.
        """
        total, refused, parts = BatchResult(), [], [readings]
        while parts:
            part = parts.pop()
            try:
                result = self._while_serving_connections(
                    store_readings, self.engine, [reading for _, reading in part], self.replica,
                    None, self.warning_rule)
            except Exception as error:  # noqa: BLE001 - sorted below: outage, bad data or a bug
                reason = self._refusal(error, part)
                if len(part) > 1:
                    parts += [part[len(part) // 2:], part[:len(part) // 2]]
                else:
                    refused.append((part[0][0], reason))
                continue
            by_reading = {id(reading): delivery for delivery, reading in part}
            refused += [(by_reading[id(reading)], CONFLICTING_DUPLICATE_REASON)
                        for reading in result.conflicting]
            total.add(result)
            log_event(logger, "monitor.batch_stored", level=logging.DEBUG, replica=self.replica,
                      received=result.received, inserted=result.inserted, alerts=result.alerts)
        return total, refused

    def _while_serving_connections(self, work, *arguments):
        """Run `work` on the storage thread, servicing both broker connections until it returns."""
        connection = self._connection
        future = self._storage.submit(work, *arguments)
        # Wake process_data_events as soon as the work is done, not at its time limit.
        future.add_done_callback(lambda _: connection.add_callback_threadsafe(lambda: None))
        try:
            while not future.done():
                HEALTH.turned()
                connection.process_data_events(time_limit=SERVICE_WHILE_STORING_SECONDS)
                self._publish_connection.process_data_events(time_limit=0)
                self._announce()  # a long store must not look like a dead replica
        except CONNECTION_ERRORS:
            # Not the batch's fault: the store finishes, the ack after it fails on the lost
            # connection, the worker reconnects and the batch comes back (stored idempotently).
            pass
        return future.result()

    def _refusal(self, error: Exception, part: list) -> str:
        """Return why storing `part` failed for a reason in its data; raise if it was not the data."""
        if isinstance(error, DBAPIError):
            code = database_error_code(error)
            if not blames_the_message(error):
                raise DatabaseUnavailable(f"storing a batch failed: {type(error).__name__} {code}") from error
            return refusal_reason(error)
        if len(part) == 1:
            log_event(logger, "monitor.store_crashed", level=logging.ERROR, exc_info=True,
                      message_id=part[0][0][1].message_id)
        return internal_error_reason(error)

    def _sweep_alerts(self) -> None:
        self._last_sweep = time.monotonic()
        try:
            # A few statements, on this thread: the sweep publishes inside its transaction.
            publish_pending_alerts(self.engine, self._publish_channel)
        except DBAPIError as error:
            raise DatabaseUnavailable(f"publishing alerts failed: {error.__class__.__name__}") from error
