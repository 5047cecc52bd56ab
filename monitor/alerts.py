"""Publishing stored alerts and warnings to `ems.alerts`, exactly once per device-hour and kind.

Warnings (`monitor.warnings`) are rows of the same table with kind `warning`:
everything below holds for them alike.

An alert row is committed together with the readings that raised it (see
`monitor.storage`), with `published_at` empty. After the commit, and again at
start-up and now and then, `publish_pending_alerts` locks unpublished rows
(`FOR UPDATE SKIP LOCKED`, so two replicas never take the same row), publishes
each with a broker confirm and marks it published in the same transaction.
A crash before the publish leaves the row unpublished for the next sweep; a
crash between the confirm and the commit could repeat a message, which is why
every message carries `alert_id` for consumers to dedupe.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import pika
import pika.exceptions
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from common.amqp import message_properties
from common.logs import log_event
from common.messages import Alert
from common.metrics import alert_published_headers
from common.topology import ALERTS_EXCHANGE, alert_routing_key

logger = logging.getLogger(__name__)

PUBLISH_BATCH = 100
# Test-only fault injection: crash after alerts are committed, before they are
# published, to prove that a restart publishes them exactly once.
FAULT_CRASH_BEFORE_ALERT_PUBLISH = "EMS_FAULT_CRASH_BEFORE_ALERT_PUBLISH"

SELECT_UNPUBLISHED = text(
    "SELECT id, kind, owner_id, device_id, device_name, hour_start, kwh, limit_kwh, due_at FROM alerts "
    "WHERE published_at IS NULL ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
MARK_PUBLISHED = text(
    "UPDATE alerts SET published_at = UTC_TIMESTAMP(3) WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True))


def crash_if_fault_injected() -> None:
    """Exit at once like a killed process when the test-only fault variable is set."""
    if os.environ.get(FAULT_CRASH_BEFORE_ALERT_PUBLISH) == "1":
        log_event(logger, "monitor.fault_injected", level=logging.WARNING,
                  fault=FAULT_CRASH_BEFORE_ALERT_PUBLISH)
        logging.shutdown()
        os._exit(137)


def utc_iso(moment: datetime) -> str:
    """Return a naive UTC datetime from the database as ISO 8601 with its offset."""
    return moment.replace(tzinfo=UTC).isoformat()


def alert_message(row) -> Alert:
    """Build the Alert message of an alert or warning row."""
    return Alert(
        alert_id=row.id,
        user_id=row.owner_id,
        device_id=row.device_id,
        device_name=row.device_name,
        hour_start=utc_iso(row.hour_start),
        kwh=float(row.kwh),
        limit_kwh=float(row.limit_kwh),
        kind=row.kind,
        due_at=utc_iso(row.due_at) if row.due_at else None,
    )


def publish_pending_alerts(engine: Engine, channel) -> int:
    """Publish every unpublished alert on a confirm-mode channel; return how many."""
    published = 0
    while True:
        with engine.begin() as connection:
            rows = connection.execute(SELECT_UNPUBLISHED, {"limit": PUBLISH_BATCH}).all()
            if not rows:
                return published
            for row in rows:
                alert = alert_message(row)
                try:
                    channel.basic_publish(
                        exchange=ALERTS_EXCHANGE,
                        routing_key=alert_routing_key(alert.user_id),
                        body=alert.to_json(),
                        properties=message_properties(alert_published_headers(),
                                                      message_id=f"alert-{alert.alert_id}"),
                        mandatory=True,
                    )
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
                    # Leave it (and the rest) unpublished: the next sweep tries again.
                    log_event(logger, "monitor.alert_not_confirmed", level=logging.ERROR,
                              alert_id=alert.alert_id, error=type(error).__name__)
                    rows = rows[:rows.index(row)]
                    break
                log_event(logger, "monitor.alert_published", alert_id=alert.alert_id, kind=alert.kind,
                          device_id=alert.device_id, hour_start=alert.hour_start)
            if rows:
                connection.execute(MARK_PUBLISHED, {"ids": [row.id for row in rows]})
            published += len(rows)
            if len(rows) < PUBLISH_BATCH:
                return published
