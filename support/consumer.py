"""The consumer of `support.inbound`: one worker, batches, acks after commit.

One thread owns the pika connection (pika is not thread-safe): it receives
deliveries and hands them, in order, to one worker thread, so every client's
messages keep their order and the connection keeps answering heartbeats while
the database works. The worker processes what has queued up in one transaction
(batches grow by themselves under load, which is when they pay off), then asks
the connection thread (`add_callback_threadsafe`) to dead-letter the rejected
messages and ack the batch with one `multiple` ack. Invalid or forbidden
messages are dead-lettered with their reason; a database outage requeues the
batch after a pause; a message that breaks the code is dead-lettered alone
instead of blocking the queue.

One worker rather than several: the work holds Python's GIL most of the time,
and more threads only cut batches smaller and fight over it (measured with
`bench/chat.py`).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, OperationalError

from common.amqp import CONNECTION_ERRORS, connect, dead_letter, run_with_reconnect
from common.logs import log_event
from common.topology import SUPPORT_INBOUND_QUEUE
from support.service import ChatService

logger = logging.getLogger(__name__)
PREFETCH = 128
BATCH_MAX = 32
POLL_SECONDS = 0.2
PRESENCE_CHECK_SECONDS = 15
DATABASE_RETRY_SECONDS = 2.0
# MariaDB rolled the transaction back to break a deadlock (1213), or did so inside a
# savepoint, which then no longer exists (1305): the batch can run again at once.
ROLLED_BACK_BY_THE_DATABASE = {1213, 1305}


@dataclass(frozen=True)
class Delivery:
    """One message received on one connection (its tag is valid on that connection only)."""

    connection: object
    channel: object
    tag: int
    routing_key: str
    body: bytes
    properties: object


def database_error_code(error: OperationalError) -> int | None:
    """Return MariaDB's error number behind a SQLAlchemy error, if it has one."""
    arguments = getattr(error.orig, "args", ())
    return arguments[0] if arguments and isinstance(arguments[0], int) else None


class SupportConsumer:
    """Consume inbound chat messages; process them in batches on one worker thread."""

    def __init__(self, settings, service: ChatService):
        self.settings = settings
        self.service = service
        self.stopping = threading.Event()
        self.work: queue.Queue[Delivery | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="inbound-worker", daemon=True)

    def run(self) -> None:
        """Consume until SIGTERM/SIGINT, reconnecting after broker failures."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.worker.start()
        run_with_reconnect(self._consume, SUPPORT_INBOUND_QUEUE, should_stop=self.stopping.is_set)
        self.work.put(None)
        self.worker.join(10)

    def _stop(self, *_):
        self.stopping.set()

    def _consume(self) -> None:
        connection = connect(self.settings)
        try:
            channel = connection.channel()
            # Dead letters must be confirmed before the original is acked.
            channel.confirm_delivery()
            channel.basic_qos(prefetch_count=PREFETCH)
            log_event(logger, "support.consuming", queue=SUPPORT_INBOUND_QUEUE)
            next_presence_check = 0.0
            for method, properties, body in channel.consume(SUPPORT_INBOUND_QUEUE,
                                                            inactivity_timeout=POLL_SECONDS):
                if method is not None:
                    self.work.put(Delivery(connection, channel, method.delivery_tag, method.routing_key,
                                           body, properties))
                if time.monotonic() >= next_presence_check:
                    # Notifiers that went silent change "admins online" without any message.
                    self._refresh_presence()
                    next_presence_check = time.monotonic() + PRESENCE_CHECK_SECONDS
                if self.stopping.is_set():
                    break
            channel.cancel()
            # Let the worker finish what it holds, then acknowledge it before closing.
            deadline = time.monotonic() + 10
            while self.work.unfinished_tasks and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
            connection.process_data_events(time_limit=0)
        finally:
            if connection.is_open:
                connection.close()

    def _work(self) -> None:
        """Take what has queued up and process it as one batch, again and again."""
        while True:
            first = self.work.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    item = self.work.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.work.put(None)
                    break
                batch.append(item)
            try:
                self._process(batch)
            finally:
                for _ in batch:
                    self.work.task_done()

    def _process(self, batch: list[Delivery], retry: bool = True, careful: bool = False) -> None:
        """Process a batch; `careful` looks its sends up first instead of relying on the unique key."""
        started = time.perf_counter()
        try:
            reasons = self.service.process([(d.routing_key, d.body) for d in batch], look_up_sends=careful)
            log_event(logger, "support.batch_processed", level=logging.DEBUG, size=len(batch),
                      ms=round((time.perf_counter() - started) * 1000, 1))
        except OperationalError as error:
            code = database_error_code(error)
            if retry and code in ROLLED_BACK_BY_THE_DATABASE:
                log_event(logger, "support.batch_retried", level=logging.WARNING, code=code, size=len(batch))
                self._process(batch, retry=False, careful=careful)
                return
            log_event(logger, "support.database_unavailable", level=logging.WARNING,
                      error=type(error).__name__, code=code, size=len(batch))
            time.sleep(DATABASE_RETRY_SECONDS)
            self._settle(batch, None, requeue=True)
            return
        except Exception as error:
            if isinstance(error, IntegrityError) and not careful:
                # A send stored before: retried by a browser, or redelivered. Rare, so batches
                # skip the look-up and only a batch that meets the unique key pays for it.
                self._process(batch, retry, careful=True)
                return
            if len(batch) > 1:
                for delivery in batch:  # find the one message that breaks, keep the others
                    self._process([delivery], careful=careful)
                return
            if retry and isinstance(error, IntegrityError):
                # Another consumer stored the same send after our look-up: now it is found.
                self._process(batch, retry=False, careful=True)
                return
            log_event(logger, "support.message_failed", level=logging.ERROR, exc_info=True)
            reasons = ["internal error while processing this message"]
        self._settle(batch, reasons)

    def _settle(self, batch: list[Delivery], reasons: list[str | None] | None, requeue: bool = False) -> None:
        """Have the connection's thread dead-letter, ack or requeue the batch.

        Deliveries are processed and settled in the order they came, so one
        `multiple` ack (or nack) of a batch's last delivery settles all of it.
        """
        rejected = [(delivery, reason) for delivery, reason in zip(batch, reasons or [None] * len(batch),
                                                                   strict=True) if reason is not None]
        # A batch may straddle a reconnection: each part goes back on its own channel.
        last_on_channel = {id(d.channel): d for d in batch}.values()

        def settle():
            for delivery, reason in rejected:
                if delivery.channel.is_open:
                    dead_letter(delivery.channel, SUPPORT_INBOUND_QUEUE, delivery.routing_key, delivery.body,
                                reason, delivery.properties)
                    log_event(logger, "support.dead_lettered", level=logging.WARNING,
                              routing_key=delivery.routing_key, reason=reason)
            for last in last_on_channel:
                if not last.channel.is_open:
                    continue  # that connection is gone: the broker redelivers, processing is idempotent
                if requeue:
                    last.channel.basic_nack(last.tag, multiple=True, requeue=True)
                else:
                    last.channel.basic_ack(last.tag, multiple=True)

        try:
            batch[-1].connection.add_callback_threadsafe(settle)
        except CONNECTION_ERRORS:
            pass  # closed: the broker redelivers

    def _refresh_presence(self) -> None:
        try:
            self.service.refresh_presence()
        except OperationalError:
            log_event(logger, "support.presence_check_failed", level=logging.WARNING)
