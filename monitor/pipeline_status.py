"""What the admin Pipeline page shows: strategy, per-replica queues, routing and storage counters.

Queue depths and consumers come from passive declares (they never create or
change a queue); what the replicas stored comes from `replica_stats` (written
by each replica) in the monitor database. Everything about routing is the
balancer's view, which it keeps as the one message of `pipeline.status` (read,
then put back): the live replica set (joining, active, draining, gone),
readings/s over the last minute, lag and devices per replica, and its routing
counters since it started, the same counts its `ems_readings_routed_total`
metric exports. The balancer writes nothing into the monitor's database.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pika.exceptions
from sqlalchemy import text
from sqlalchemy.engine import Connection

from common.amqp import CONNECTION_ERRORS, connect
from common.membership import ACTIVE, DRAINING, GONE, JOINING, MAX_REPLICA
from common.messages import InvalidMessage, load_json_object
from common.settings import Settings
from common.topology import DEAD_LETTERS_QUEUE, PIPELINE_STATUS_QUEUE, READINGS_QUEUE, ingest_queue

REPLICA_STATES = (JOINING, ACTIVE, DRAINING, GONE)
# The balancer's view of a thousand replicas stays far below this.
MAX_VIEW_BYTES = 1_048_576
MAX_STRATEGY_LENGTH = 32
# A view stamped outside these years is not one a balancer sent.
MIN_SENT_AT_MS, MAX_SENT_AT_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01, 2100-01-01


@dataclass
class QueueState:
    name: str
    depth: int | None = None  # None: the queue does not exist (yet)
    consumers: int | None = None


@dataclass
class ReplicaStatus:
    replica: int
    queue: QueueState
    routed: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicting_duplicates: int = 0
    too_old: int = 0  # older than the retention window: dead-lettered
    unknown_device: int = 0
    alerts: int = 0
    # From the balancer's view (None when no balancer reports): joining, active, draining or gone.
    state: str | None = None
    readings_per_second: float | None = None  # routed to it, over the last minute
    lag_seconds: float | None = None  # how long its last readings waited in its queue
    devices: int | None = None  # devices routed to it (hash strategies: each device has one)


@dataclass
class PipelineStatus:
    configured_strategy: str
    active_strategy: str | None
    balancer_seen_at: datetime | None
    broker_reachable: bool
    incoming: QueueState
    dead_letters: QueueState
    dead_lettered_by_balancer: int
    raw_retention_days: int
    replicas: list[ReplicaStatus] = field(default_factory=list)

    @property
    def total_routed(self) -> int:
        return sum(replica.routed for replica in self.replicas)

    @property
    def total_stored(self) -> int:
        return sum(replica.stored for replica in self.replicas)


@contextmanager
def broker_connection(settings: Settings):
    """Yield a connection to the broker (declaring nothing), or None if it is away; close it after."""
    try:
        connection = connect(settings, declare=False)
    except CONNECTION_ERRORS:
        yield None
        return
    try:
        yield connection
    finally:
        try:
            connection.close()
        except CONNECTION_ERRORS:
            pass


def queue_states(settings: Settings, names: list[str]) -> dict[str, QueueState] | None:
    """Return depth and consumers of each queue by passive declares, or None if the broker is away."""
    with broker_connection(settings) as connection:
        if connection is None:
            return None
        states = {}
        channel = connection.channel()
        for name in names:
            try:
                frame = channel.queue_declare(name, passive=True)
                states[name] = QueueState(name, frame.method.message_count, frame.method.consumer_count)
            except pika.exceptions.ChannelClosedByBroker:
                # A missing queue closes the channel: note it and carry on with a new one.
                states[name] = QueueState(name)
                channel = connection.channel()
        return states


def balancer_view(settings: Settings) -> dict:
    """Return the balancer's latest view of the replicas (left in its queue), or {} if there is none.

    Whatever the queue holds is read like any message: a body that is not the balancer's
    view gives an empty one, never an error page.
    """
    with broker_connection(settings) as connection:
        if connection is None:
            return {}
        try:
            channel = connection.channel()
            method, _properties, body = channel.basic_get(PIPELINE_STATUS_QUEUE)
            if method is None:
                return {}
            channel.basic_nack(method.delivery_tag, requeue=True)
            return load_json_object(body, MAX_VIEW_BYTES)
        except (*CONNECTION_ERRORS, InvalidMessage):
            return {}


def _number(value) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def known_replicas(view: dict) -> dict[int, dict]:
    """Return the view's entries by replica number, with only the fields the page shows, well-typed."""
    entries = view.get("replicas")
    known = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or type(entry.get("replica")) is not int \
                or not 1 <= entry["replica"] <= MAX_REPLICA:
            continue
        devices = entry.get("devices")
        known[entry["replica"]] = {
            "state": entry.get("state") if entry.get("state") in REPLICA_STATES else None,
            "readings_per_second": _number(entry.get("readings_per_second")),
            "lag_seconds": _number(entry.get("lag_seconds")),
            "devices": devices if type(devices) is int else None,
        }
    return known


def _count(value) -> int | None:
    return value if type(value) is int and value >= 0 else None


@dataclass
class BalancerCounters:
    """What the balancer's view says about its routing, well-typed (None or empty when it does not)."""

    strategy: str | None = None
    sent_at: datetime | None = None  # naive UTC, as the page shows it
    routed: dict[int, int] = field(default_factory=dict)  # by replica, since the balancer started
    dead_lettered: int = 0  # readings it refused, since it started


def balancer_counters(view: dict) -> BalancerCounters:
    """Return the view's strategy, time and routing counters, dropping whatever is not well-typed."""
    strategy, sent_at = view.get("strategy"), view.get("sent_at")
    routed = view.get("routed")
    counters = BalancerCounters(
        strategy=strategy if isinstance(strategy, str) and 0 < len(strategy) <= MAX_STRATEGY_LENGTH else None,
        sent_at=datetime.fromtimestamp(sent_at / 1000, UTC).replace(tzinfo=None)
        if type(sent_at) is int and MIN_SENT_AT_MS <= sent_at <= MAX_SENT_AT_MS else None,
        dead_lettered=_count(view.get("dead_lettered")) or 0,
    )
    for key, count in (routed.items() if isinstance(routed, dict) else ()):
        # JSON keys are strings: "1".."1000", nothing longer is parsed.
        digits = isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 4
        replica = int(key) if digits else 0
        if 1 <= replica <= MAX_REPLICA and _count(count) is not None:
            counters.routed[replica] = count
    return counters


def pipeline_status(settings: Settings, connection: Connection) -> PipelineStatus:
    """Collect the pipeline's state for the admin page."""
    view = balancer_view(settings)
    seen = known_replicas(view)
    balancer = balancer_counters(view)
    # The queues declared from the start, and every replica the balancer knows of.
    replicas = sorted(set(range(1, settings.monitor_replicas + 1)) | set(seen))
    names = [READINGS_QUEUE, DEAD_LETTERS_QUEUE, *(ingest_queue(n) for n in replicas)]
    states = queue_states(settings, names)
    stored = {row.replica: row for row in connection.execute(text(
        "SELECT replica, readings_stored, duplicates, conflicting_duplicates, too_old_readings, "
        "unknown_device_readings, "
        "alerts_raised "
        "FROM replica_stats"))}
    status = PipelineStatus(
        configured_strategy=settings.balancer_strategy,
        active_strategy=balancer.strategy,
        balancer_seen_at=balancer.sent_at,
        broker_reachable=states is not None,
        incoming=(states or {}).get(READINGS_QUEUE, QueueState(READINGS_QUEUE)),
        dead_letters=(states or {}).get(DEAD_LETTERS_QUEUE, QueueState(DEAD_LETTERS_QUEUE)),
        dead_lettered_by_balancer=balancer.dead_lettered,
        raw_retention_days=settings.raw_retention_days,
    )
    for n in replicas:
        row = stored.get(n)
        status.replicas.append(ReplicaStatus(
            replica=n,
            queue=(states or {}).get(ingest_queue(n), QueueState(ingest_queue(n))),
            routed=balancer.routed.get(n, 0),
            stored=row.readings_stored if row else 0,
            duplicates=row.duplicates if row else 0,
            conflicting_duplicates=row.conflicting_duplicates if row else 0,
            too_old=row.too_old_readings if row else 0,
            unknown_device=row.unknown_device_readings if row else 0,
            alerts=row.alerts_raised if row else 0,
            state=seen.get(n, {}).get("state"),
            readings_per_second=seen.get(n, {}).get("readings_per_second"),
            lag_seconds=seen.get(n, {}).get("lag_seconds"),
            devices=seen.get(n, {}).get("devices"),
        ))
    return status
