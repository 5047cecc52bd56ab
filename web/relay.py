"""The outbox relay (`python -m web relay`): publish committed events to `ems.events`.

Delivery is at-least-once: a row is marked published only after the broker has
confirmed it, so a crash between the confirm and the mark publishes it again
(consumers dedupe by `sequence`). A broker outage only delays events: the rows
stay in the outbox and the relay retries with a capped back-off. A rolled-back
change never had a committed row, so it is never published.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import timedelta

from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from common.amqp import CONNECTION_ERRORS, ConfirmingPublisher, PublishNotConfirmed
from common.backoff import Backoff
from common.db import engine_options
from common.health import HEALTH
from common.logs import log_event
from common.messages import InvalidMessage
from common.metrics import OUTBOX_EVENTS, OUTBOX_OLDEST_SECONDS
from common.settings import Settings
from common.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    EVENTS_EXCHANGE,
)
from web.models import utcnow

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
IDLE_POLL_SECONDS = 0.2
# Published rows are kept a while for inspection, then removed.
PUBLISHED_RETENTION = timedelta(days=7)
CLEANUP_EVERY_SECONDS = 3600
LOCK_WAIT_SECONDS = 5


def unpublished_rows(engine: Engine, limit: int = BATCH_SIZE) -> list[tuple[int, str, object]]:
    """Return up to `limit` committed, unpublished events in id order, bodies as stored."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, routing_key, body FROM outbox WHERE published_at IS NULL "
                 "ORDER BY id LIMIT :limit"), {"limit": limit}).all()
    return [(row.id, row.routing_key, row.body) for row in rows]


def event_body(body) -> bytes:
    """Return a stored event body as compact JSON, or raise InvalidMessage."""
    try:
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body).decode()
        if isinstance(body, str):
            # MariaDB returns JSON columns as text.
            body = json.loads(body)
        return json.dumps(body, separators=(",", ":")).encode()
    except (ValueError, TypeError, RecursionError) as error:  # UnicodeError is a ValueError
        raise InvalidMessage(f"outbox body is not JSON: {type(error).__name__}") from error


def mark_published(engine: Engine, ids: list[int]) -> None:
    """Record that the broker confirmed these events."""
    if not ids:
        return
    with engine.begin() as connection:
        connection.execute(text("UPDATE outbox SET published_at = :now WHERE id IN :ids")
                           .bindparams(bindparam("ids", expanding=True)),
                           {"now": utcnow(), "ids": ids})


def relay_batch(engine: Engine, publisher: ConfirmingPublisher) -> int:
    """Publish one batch of events; return how many were confirmed.

    Rows confirmed before a failure are still marked, then the failure is raised.
    """
    confirmed: list[int] = []
    try:
        for row_id, routing_key, stored in unpublished_rows(engine):
            try:
                publisher.publish(EVENTS_EXCHANGE, routing_key, event_body(stored), message_id=str(row_id))
            except InvalidMessage as error:
                # A row that cannot be an event is kept aside, not retried for ever.
                raw = stored if isinstance(stored, bytes) else str(stored).encode("utf-8", "replace")
                publisher.publish(DEAD_LETTER_EXCHANGE, f"outbox.{routing_key}", raw, message_id=str(row_id),
                                  headers={DEAD_LETTER_REASON_HEADER: str(error),
                                           DEAD_LETTER_SOURCE_HEADER: "outbox"})
                log_event(logger, "relay.dead_lettered", level=logging.WARNING, id=row_id, reason=str(error))
            confirmed.append(row_id)
    finally:
        mark_published(engine, confirmed)
    return len(confirmed)


def measure_outbox(engine: Engine) -> None:
    """Export the outbox backlog and the age of its oldest event."""
    with engine.connect() as connection:
        backlog, oldest = connection.execute(
            text("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE published_at IS NULL")).one()
    OUTBOX_EVENTS.set(backlog)
    OUTBOX_OLDEST_SECONDS.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)


def delete_old_published(engine: Engine) -> int:
    """Remove events published longer ago than the retention period."""
    with engine.begin() as connection:
        result = connection.execute(text("DELETE FROM outbox WHERE published_at < :before"),
                                    {"before": utcnow() - PUBLISHED_RETENTION})
    return result.rowcount


class OutboxRelay:
    """Loop that drains the outbox to RabbitMQ until asked to stop."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self.engine = engine or create_engine(settings.database_url("web"), **engine_options())
        self.publisher = ConfirmingPublisher(settings)
        self.stopping = threading.Event()
        self.published = 0

    def stop(self, *_signal_args) -> None:
        """Ask the loop to finish after the current batch."""
        self.stopping.set()

    def run(self) -> None:
        """Relay events until stopped, riding out database restarts with a capped back-off."""
        backoff = Backoff()
        try:
            while not self.stopping.is_set():
                backoff.started()
                try:
                    self._run_holding_lock()
                except DBAPIError as error:
                    # Database away or not migrated yet (the lock went with the connection): start over.
                    delay = backoff.next_delay()
                    log_event(logger, "relay.database_unavailable", level=logging.WARNING,
                              error=type(error).__name__, retry_in=round(delay, 1))
                    self.stopping.wait(delay)
        finally:
            self.publisher.close()
            log_event(logger, "relay.stopped", published=self.published)

    def _run_holding_lock(self) -> None:
        """Take the relay lock of this database, then relay until stopped.

        The advisory lock keeps a second relay (another replica) from publishing the
        same rows in parallel; it waits as a hot standby instead.
        """
        lock_name = f"{self.settings.database_name('web')}.outbox_relay"
        with self.engine.connect() as lock_connection:
            while not self.stopping.is_set():
                HEALTH.turned()
                got = lock_connection.execute(text("SELECT GET_LOCK(:name, :wait)"),
                                              {"name": lock_name, "wait": LOCK_WAIT_SECONDS}).scalar()
                if got == 1:
                    break
            else:
                return
            log_event(logger, "relay.started")
            HEALTH.set_ready(True)
            try:
                self._loop()
            finally:
                lock_connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name})

    def _loop(self) -> None:
        backoff = Backoff()
        next_cleanup = time.monotonic()
        while not self.stopping.is_set():
            HEALTH.turned()
            try:
                count = relay_batch(self.engine, self.publisher)
                measure_outbox(self.engine)
            except (PublishNotConfirmed, DBAPIError, *CONNECTION_ERRORS) as error:
                # Broker or database away: keep the rows, wait, try again.
                delay = backoff.next_delay()
                log_event(logger, "relay.retrying", level=logging.WARNING,
                          error=type(error).__name__, retry_in=round(delay, 1))
                self.publisher.close()
                self.stopping.wait(delay)
                continue
            backoff.reset()
            if count:
                self.published += count
                log_event(logger, "relay.published", count=count)
                continue
            if time.monotonic() >= next_cleanup:
                delete_old_published(self.engine)
                next_cleanup = time.monotonic() + CLEANUP_EVERY_SECONDS
            self._idle()

    def _idle(self) -> None:
        try:
            self.publisher.process_events()
        except CONNECTION_ERRORS:
            self.publisher.close()
        self.stopping.wait(IDLE_POLL_SECONDS)


def run_relay(settings: Settings) -> None:
    """Run the relay in this process until SIGTERM or SIGINT."""
    relay = OutboxRelay(settings)
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    relay.run()
