"""The consumer of `support.inbound`: one worker, batches, acks after commit.

One thread owns the pika connection (pika is not thread-safe): it receives
deliveries and hands them, in order, to one worker thread, so every client's
messages keep their order and the connection keeps answering heartbeats while
the database works. The worker processes what has queued up in one transaction
(batches grow by themselves under load, which is when they pay off), then asks
the connection thread (`add_callback_threadsafe`) to dead-letter the rejected
messages and ack the batch with one `multiple` ack.

What happens to a batch, top-down: `_receive` hands deliveries to the worker;
`_take_batch` takes what queued up; `_process` runs it through `ATTEMPTS`, each
attempt calling `ChatService.process` (support/service.py: parse, lock and
load the conversations, decide the replies, write, commit, emit); `_settle`
dead-letters the rejected and acknowledges the batch.

A batch goes through `ATTEMPTS` until one works: all at once, then (after a
send stored before meets the unique key) with the sends looked up, then one
message per transaction, where a message the database refuses for good or that
breaks the code is dead-lettered with its reason and the others are stored.
When the database is away (or the deployment broken), the worker backs off and
has the channel closed: the broker takes back the failed batch and everything
received behind it, and delivers them again in their order.

One worker rather than several: the work holds Python's GIL most of the time,
and more threads only cut batches smaller and fight over it (measured with
`bench/chat.py`).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from common.amqp import CONNECTION_ERRORS, connect, dead_letter, internal_error_reason, run_with_reconnect
from common.backoff import Backoff
from common.broker_users import chat_publisher_user, forged_sender_reason
from common.db import blames_the_message, database_error_code, refusal_reason
from common.health import HEALTH
from common.logs import log_event
from common.metrics import CHAT_MESSAGES_HANDLED
from common.topology import SUPPORT_INBOUND_QUEUE
from support.service import ChatService

logger = logging.getLogger(__name__)
PREFETCH = 128
BATCH_MAX = 32
POLL_SECONDS = 0.2
PRESENCE_CHECK_SECONDS = 15
# MariaDB rolled the transaction back to break a deadlock (1213), or did so inside a
# savepoint, which then no longer exists (1305): the batch can run again at once.
ROLLED_BACK_BY_THE_DATABASE = {1213, 1305}
DUPLICATE_KEY = 1062


@dataclass(frozen=True)
class Delivery:
    """One message received on one channel (its tag is valid on that channel only)."""

    connection: object
    channel: object
    tag: int
    routing_key: str
    body: bytes
    properties: object

    @property
    def message_id(self) -> str:
        """Return an id to name the message in logs: the publisher's, or a digest of the body."""
        given = getattr(self.properties, "message_id", None)
        return given or "sha256:" + hashlib.sha256(self.body).hexdigest()[:16]


@dataclass(frozen=True)
class Attempt:
    """One way to process a batch; a batch goes through `ATTEMPTS` in order until one works."""

    name: str
    look_up_sends: bool  # look for stored sends first instead of relying on the unique key
    one_by_one: bool = False  # one transaction per message: a message that breaks fails alone
    only_after_duplicate: bool = False  # worth it only when the attempt before met the unique key


ATTEMPTS = (
    Attempt("at once", look_up_sends=False),
    # A send stored before (retried by a browser, or redelivered) breaks the unique key.
    # Rare, so batches skip the look-up and only a batch that meets the key pays for it.
    Attempt("carefully", look_up_sends=True, only_after_duplicate=True),
    Attempt("one by one", look_up_sends=True, one_by_one=True),
)


def is_duplicate_key(error: BaseException | None) -> bool:
    """Tell whether `error` is the unique key of sends meeting a send stored before."""
    return isinstance(error, IntegrityError) and database_error_code(error) == DUPLICATE_KEY


def waits_for_the_database(error: BaseException) -> bool:
    """Tell whether processing must wait for the database rather than blame the messages.

    An outage or lost lock race goes away by itself; a broken deployment (a missing
    table, denied access) is mended by someone: neither is the messages' fault.
    """
    if isinstance(error, (DisconnectionError, PoolTimeoutError)):
        return True
    return isinstance(error, DBAPIError) and not blames_the_message(error)


class SupportConsumer:
    """Consume inbound chat messages; process them in batches on one worker thread."""

    def __init__(self, settings, service: ChatService):
        self.settings = settings
        self.service = service
        self.stopping = threading.Event()
        self.work: queue.Queue[Delivery | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="inbound-worker", daemon=True)
        self.database_backoff = Backoff()
        # Giving deliveries back: asked by the worker, done on the connection's thread.
        self.giving_back = False
        self.given_back = threading.Event()
        self.next_presence_check = 0.0
        # Deliveries are settled in order: the last one settled tells which are not yet.
        self.last_settled: Delivery | None = None
        # Only the notifier's broker user may speak for a browser (the broker checks user-id).
        self.chat_publisher = chat_publisher_user(settings)

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

    # --- the connection's thread ---

    def _consume(self) -> None:
        connection = connect(self.settings)
        self.giving_back = False  # anything asked on a lost connection is back with the broker
        try:
            while True:
                channel = connection.channel()
                # Dead letters must be confirmed before the original is acked.
                channel.confirm_delivery()
                channel.basic_qos(prefetch_count=PREFETCH)
                log_event(logger, "support.consuming", queue=SUPPORT_INBOUND_QUEUE)
                self._receive(connection, channel)
                if self.stopping.is_set() or not self.giving_back:
                    break
                # Closing the channel gives the broker back every delivery not yet settled
                # on it, which it delivers again in queue order; the worker skips the copies
                # it still holds (their channel is closed).
                channel.close()
                self.giving_back = False
                self.given_back.set()
                log_event(logger, "support.given_back", level=logging.WARNING)
            channel.cancel()
            # Let the worker finish what it holds, then acknowledge it before closing.
            deadline = time.monotonic() + 10
            while self.work.unfinished_tasks and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
            connection.process_data_events(time_limit=0)
        finally:
            if connection.is_open:
                connection.close()
            self.given_back.set()  # the closed connection gave back all it had

    def _receive(self, connection, channel) -> None:
        """Hand deliveries to the worker until stopping, or until the worker gives them back."""
        deliveries = channel.consume(SUPPORT_INBOUND_QUEUE, inactivity_timeout=POLL_SECONDS)
        HEALTH.set_ready(True)
        for method, properties, body in deliveries:
            HEALTH.turned()
            if self.giving_back:
                return  # this delivery too goes back with the channel
            if method is not None:
                HEALTH.received()
                self.work.put(Delivery(connection, channel, method.delivery_tag, method.routing_key,
                                       body, properties))
            if time.monotonic() >= self.next_presence_check:
                # Notifiers that went silent change "admins online" without any message.
                self._refresh_presence()
                self.next_presence_check = time.monotonic() + PRESENCE_CHECK_SECONDS
            if self.stopping.is_set() or self.giving_back:
                return

    def _ask_to_give_back(self) -> None:
        self.giving_back = True

    def _refresh_presence(self) -> None:
        try:
            self.service.refresh_presence()
        except Exception as error:  # noqa: BLE001 - a periodic check: the next one tries again
            log_event(logger, "support.presence_check_failed", level=logging.WARNING,
                      error=type(error).__name__)

    # --- the worker's thread ---

    def _work(self) -> None:
        """Take what has queued up and process it as one batch, again and again."""
        while (batch := self._take_batch()) is not None:
            # Deliveries of a closed channel are the broker's again: it delivers them anew.
            live = [delivery for delivery in batch if delivery.channel.is_open]
            try:
                if live:
                    self._process(live)
            except Exception as error:  # noqa: BLE001 - the last resort: never stop, never loop
                # Not log_event: its fields go to `extra`, which may not carry exc_info.
                logger.error("support.batch_crashed", exc_info=True,
                             extra={"message_ids": ",".join(delivery.message_id for delivery in live)})
                if unsettled := self._unsettled(live):
                    self._settle(unsettled, [internal_error_reason(error)] * len(unsettled))
            finally:
                for _ in batch:
                    self.work.task_done()

    def _take_batch(self) -> list[Delivery] | None:
        """Wait for a delivery; return it with what queued up behind it (None: stop)."""
        first = self.work.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < BATCH_MAX:
            try:
                item = self.work.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.work.put(None)  # seen again by the next call, which stops
                break
            batch.append(item)
        return batch

    def _unsettled(self, batch: list[Delivery]) -> list[Delivery]:
        """Return the deliveries of `batch` after the last one settled."""
        for index, delivery in enumerate(batch):
            if delivery is self.last_settled:
                return batch[index + 1:]
        return batch

    def _process(self, batch: list[Delivery]) -> None:
        """Process a batch by the first of `ATTEMPTS` that works; settle it or give it back."""
        started = time.perf_counter()
        failure = None
        for attempt in ATTEMPTS:
            if attempt.only_after_duplicate and not is_duplicate_key(failure):
                continue
            if attempt.one_by_one:
                self._process_one_by_one(batch)
                return
            try:
                reasons = self._run(batch, attempt.look_up_sends)
            except Exception as error:  # noqa: BLE001 - any failure leads to the next attempt
                if waits_for_the_database(error):
                    self._give_back(batch, error)
                    return
                failure = error
                log_event(logger, "support.batch_failed", level=logging.WARNING, attempt=attempt.name,
                          error=type(error).__name__, code=database_error_code(error), size=len(batch))
                continue
            log_event(logger, "support.batch_processed", level=logging.DEBUG, size=len(batch),
                      attempt=attempt.name, ms=round((time.perf_counter() - started) * 1000, 1))
            self._settle(batch, reasons)
            return

    def _process_one_by_one(self, batch: list[Delivery]) -> None:
        """Process each delivery alone: one that fails for good is dead-lettered, the others stored."""
        for index, delivery in enumerate(batch):
            try:
                reasons = self._run([delivery], look_up_sends=True)
            except Exception as error:  # noqa: BLE001 - a message that breaks is dead-lettered
                if waits_for_the_database(error):
                    self._give_back(batch[index:], error)
                    return
                reasons = [self._failure_reason(delivery, error)]
            self._settle([delivery], reasons)

    def _run(self, deliveries: list[Delivery], look_up_sends: bool) -> list[str | None]:
        """Process deliveries in one transaction; a forged one is rejected without being looked at."""
        forged = [forged_sender_reason(getattr(delivery.properties, "user_id", None), self.chat_publisher)
                  for delivery in deliveries]
        genuine = [delivery for delivery, reason in zip(deliveries, forged, strict=True) if reason is None]
        processed = iter(self._run_genuine(genuine, look_up_sends) if genuine else [])
        return [reason or next(processed) for reason in forged]

    def _run_genuine(self, deliveries: list[Delivery], look_up_sends: bool) -> list[str | None]:
        """Process deliveries in one transaction; run them again at once after a lost lock race."""
        messages = [(delivery.routing_key, delivery.body) for delivery in deliveries]
        try:
            return self.service.process(messages, look_up_sends=look_up_sends)
        except DBAPIError as error:
            code = database_error_code(error)
            # A duplicate despite the look-up: another consumer stored the send after it.
            if code not in ROLLED_BACK_BY_THE_DATABASE and not (look_up_sends and is_duplicate_key(error)):
                raise
            log_event(logger, "support.batch_retried", level=logging.WARNING, code=code, size=len(messages))
            return self.service.process(messages, look_up_sends=look_up_sends)

    @staticmethod
    def _failure_reason(delivery: Delivery, error: Exception) -> str:
        """Return why a message that failed alone is dead-lettered, logging the failure."""
        if isinstance(error, DBAPIError):  # the database refused the message's data
            log_event(logger, "support.message_refused", level=logging.WARNING,
                      message_id=delivery.message_id, code=database_error_code(error))
            return refusal_reason(error)
        logger.error("support.message_failed", exc_info=True,
                     extra={"message_id": delivery.message_id, "routing_key": delivery.routing_key})
        return internal_error_reason(error)

    def _give_back(self, deliveries: list[Delivery], error: Exception) -> None:
        """Wait for the database, backing off, then give the broker back what is not settled.

        That is these deliveries and all received after them: the broker delivers them
        again in their order, so a client's messages are stored in the order sent.
        """
        delay = self.database_backoff.next_delay()
        log_event(logger, "support.database_unavailable", level=logging.WARNING, error=type(error).__name__,
                  code=database_error_code(error), size=len(deliveries),
                  retry_in=round(delay, 2))
        time.sleep(delay)
        connection = deliveries[-1].connection
        self.given_back.clear()
        try:
            connection.add_callback_threadsafe(self._ask_to_give_back)
        except CONNECTION_ERRORS:
            return  # closed: the broker has taken everything back already
        while not self.given_back.wait(POLL_SECONDS):
            if connection.is_closed or self.stopping.is_set():
                return

    def _settle(self, batch: list[Delivery], reasons: list[str | None]) -> None:
        """Have the connection's thread dead-letter what was rejected and ack the batch.

        Deliveries are processed and settled in the order they came, so one
        `multiple` ack of a batch's last delivery settles all of it.
        """
        self.database_backoff.reset()
        self.last_settled = batch[-1]
        rejected = [(delivery, reason) for delivery, reason in zip(batch, reasons, strict=True)
                    if reason is not None]
        # A batch may straddle a reconnection: each part is acked on its own channel.
        last_on_channel = {id(d.channel): d for d in batch}.values()

        def settle():
            for delivery, reason in rejected:
                if delivery.channel.is_open:
                    dead_letter(delivery.channel, SUPPORT_INBOUND_QUEUE, delivery.routing_key, delivery.body,
                                reason, delivery.properties)
                    log_event(logger, "support.dead_lettered", level=logging.WARNING,
                              routing_key=delivery.routing_key, message_id=delivery.message_id, reason=reason)
            for last in last_on_channel:
                if last.channel.is_open:  # else the broker redelivers; processing is idempotent
                    last.channel.basic_ack(last.tag, multiple=True)
            CHAT_MESSAGES_HANDLED.inc(len(batch))
            HEALTH.acked(still_holding=self.work.unfinished_tasks > 0)

        try:
            batch[-1].connection.add_callback_threadsafe(settle)
        except CONNECTION_ERRORS:
            pass  # closed: the broker redelivers
