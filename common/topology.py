"""The RabbitMQ topology of EMS, declared from this one definition.

Every queue is durable and dead-letters into `ems.dlx`, so a message that a
consumer rejects is kept in `dead.letters` instead of being lost. Declaring is
idempotent: every process declares what it uses at connect time.

Two queues are bounded so that an overload fills no broker's memory:
`readings.incoming` refuses new readings when full (`reject-publish`: the
publisher gets a nack and retries later, nothing is dropped), and
`dead.letters` drops its oldest letters first (`drop-head`: a flood of bad
input must not stop the pipeline, and the newest letters say most about it).
A queue's arguments are fixed when it is created: `python -m migrations
upgrade` replaces a queue declared with other ones (see migrations/broker.py).

`EMS_QUEUE_TYPE=quorum` declares every durable queue as a quorum queue, replicated
over the broker cluster's nodes (Raft), so that losing one node loses no message
and stops no queue. Length limits, both overflow policies, single active consumer
and dead-lettering work the same on quorum queues (RabbitMQ 3.10, tests/ha/).
Per-process queues (exclusive, auto-delete) stay classic: a quorum queue cannot be
exclusive, and such a queue dies with its connection anyway. No `x-delivery-limit`:
consumers dead-letter poison themselves with a reason, and a limit would
dead-letter good readings redelivered through a long database outage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.settings import Settings

READINGS_EXCHANGE = "ems.readings"
READING_ROUTING_KEY = "reading"
READINGS_QUEUE = "readings.incoming"

INGEST_EXCHANGE = "ems.ingest"
INGEST_QUEUE_PATTERN = r"ingest\.[0-9]+"

# Monitor replicas announce themselves here (`membership.<n>`, about once a second);
# each balancer hears them on a queue of its own (exclusive, auto-delete).
CONTROL_EXCHANGE = "ems.control"
MEMBERSHIP_KEYS = "membership.*"
BALANCER_MEMBERSHIP_QUEUE_PREFIX = "balancer.membership."
# The balancer's view of the replicas (live set, rates, lag) for the Pipeline page: the
# latest snapshot only, read without being taken.
BALANCER_STATUS_KEY = "balancer.status"
PIPELINE_STATUS_QUEUE = "pipeline.status"

EVENTS_EXCHANGE = "ems.events"
MONITOR_EVENTS_QUEUE = "monitor.events"
USER_EVENTS_KEY = "user.*"
# Support follows users (names, deletions, ended sessions) from its own copy of their events.
SUPPORT_EVENTS_QUEUE = "support.events"
# Each notifier instance hears user events on a queue of its own (exclusive, auto-delete):
# every instance must close the sockets of an ended session that it holds.
NOTIFIER_SESSIONS_QUEUE_PREFIX = "notifier.sessions."

ALERTS_EXCHANGE = "ems.alerts"
NOTIFIER_ALERTS_QUEUE = "notifier.alerts"

CHAT_EXCHANGE = "ems.chat"
SUPPORT_INBOUND_QUEUE = "support.inbound"
CHAT_MESSAGE_KEY = "inbound.message"
CHAT_TYPING_KEY = "inbound.typing"
CHAT_READ_KEY = "inbound.read"
# The notifier tells support which administrators are connected to it.
CHAT_PRESENCE_KEY = "inbound.presence"

DEAD_LETTER_EXCHANGE = "ems.dlx"
DEAD_LETTERS_QUEUE = "dead.letters"
# Header that carries why a message was dead-lettered by an EMS consumer.
DEAD_LETTER_REASON_HEADER = "x-ems-reason"
DEAD_LETTER_SOURCE_HEADER = "x-ems-source-queue"


def ingest_queue(replica: int) -> str:
    """Return the name of the dedicated ingest queue of monitor replica `replica`."""
    return f"ingest.{replica}"


def ingest_routing_key(replica: int) -> str:
    """Return the routing key that reaches monitor replica `replica`."""
    return f"replica.{replica}"


def membership_routing_key(replica: int) -> str:
    """Return the routing key of monitor replica `replica`'s heartbeats."""
    return f"membership.{replica}"


def notifier_sessions_queue(instance: str) -> str:
    """Return the name of the user-events queue of notifier instance `instance`."""
    return NOTIFIER_SESSIONS_QUEUE_PREFIX + instance


def alert_routing_key(user_id: int | str) -> str:
    """Return the routing key of an over-consumption alert for `user_id`."""
    return f"overconsumption.{user_id}"


CLASSIC, QUORUM = "classic", "quorum"
QUEUE_TYPES = (CLASSIC, QUORUM)


@dataclass(frozen=True)
class Queue:
    name: str
    exchange: str
    routing_keys: tuple[str, ...]
    arguments: dict = field(default_factory=dict)
    # dead.letters is the end of the line: a dead-letter exchange of its own would make a cycle.
    dead_lettered: bool = True
    queue_type: str = CLASSIC


@dataclass(frozen=True)
class QueueOptions:
    """Hold what the settings decide about the durable queues: length limits and queue type."""

    readings: int = Settings.readings_queue_max_length
    dead_letters: int = Settings.dead_letters_max_length
    queue_type: str = Settings.queue_type

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueOptions:
        """Return the options configured in `settings`."""
        return cls(settings.readings_queue_max_length, settings.dead_letters_max_length, settings.queue_type)


EXCHANGES: dict[str, str] = {
    READINGS_EXCHANGE: "direct",
    INGEST_EXCHANGE: "direct",
    EVENTS_EXCHANGE: "topic",
    ALERTS_EXCHANGE: "topic",
    CHAT_EXCHANGE: "topic",
    DEAD_LETTER_EXCHANGE: "topic",
    CONTROL_EXCHANGE: "topic",
}


def shared_queues(options: QueueOptions = QueueOptions()) -> list[Queue]:
    """Return the queues every process may declare: all but the replicas' ingest queues."""
    kind = options.queue_type
    return [
        Queue(DEAD_LETTERS_QUEUE, DEAD_LETTER_EXCHANGE, ("#",),
              {"x-max-length": options.dead_letters, "x-overflow": "drop-head"}, dead_lettered=False,
              queue_type=kind),
        Queue(READINGS_QUEUE, READINGS_EXCHANGE, (READING_ROUTING_KEY,),
              {"x-max-length": options.readings, "x-overflow": "reject-publish"}, queue_type=kind),
        Queue(
            MONITOR_EVENTS_QUEUE,
            EVENTS_EXCHANGE,
            ("user.*", "device.*"),
            # One consumer at a time keeps device events in order.
            {"x-single-active-consumer": True},
            queue_type=kind,
        ),
        # One consumer at a time keeps each user's events in order.
        Queue(SUPPORT_EVENTS_QUEUE, EVENTS_EXCHANGE, (USER_EVENTS_KEY,), {"x-single-active-consumer": True},
              queue_type=kind),
        Queue(NOTIFIER_ALERTS_QUEUE, ALERTS_EXCHANGE, ("overconsumption.*",), queue_type=kind),
        Queue(SUPPORT_INBOUND_QUEUE, CHAT_EXCHANGE, ("inbound.*",), queue_type=kind),
        # A snapshot dropped for a newer one is no letter to keep. Quorum too: a classic
        # queue whose node is down refuses every declare and publish until it returns.
        Queue(PIPELINE_STATUS_QUEUE, CONTROL_EXCHANGE, (BALANCER_STATUS_KEY,),
              {"x-max-length": 1, "x-overflow": "drop-head"}, dead_lettered=False, queue_type=kind),
    ]


def queues(replicas: int, options: QueueOptions = QueueOptions()) -> list[Queue]:
    """Return every queue of the topology for a pipeline of `replicas` monitors."""
    return shared_queues(options) + [ingest_queue_definition(n, options) for n in range(1, replicas + 1)]


def ingest_queue_definition(replica: int, options: QueueOptions = QueueOptions()) -> Queue:
    """Return the ingest queue of monitor replica `replica` (any n: replicas join at will)."""
    return Queue(ingest_queue(replica), INGEST_EXCHANGE, (ingest_routing_key(replica),),
                 queue_type=options.queue_type)


def queue_arguments(queue: Queue) -> dict:
    """Return the declare arguments of `queue`: its own, its type, and the dead-letter exchange.

    A classic queue names no type: that is how every queue was declared before quorum
    queues, and declaring it again must find the same arguments.
    """
    arguments = dict(queue.arguments)
    if queue.queue_type != CLASSIC:
        arguments["x-queue-type"] = queue.queue_type
    if queue.dead_lettered:
        arguments["x-dead-letter-exchange"] = DEAD_LETTER_EXCHANGE
    return arguments


def declare_exchanges(channel) -> None:
    """Declare every exchange on a pika channel (idempotent)."""
    for name, kind in EXCHANGES.items():
        channel.exchange_declare(exchange=name, exchange_type=kind, durable=True)


def declare_queue(channel, queue: Queue) -> None:
    """Declare one queue and its bindings on a pika channel (idempotent)."""
    channel.queue_declare(queue=queue.name, durable=True, arguments=queue_arguments(queue))
    for key in queue.routing_keys:
        channel.queue_bind(queue=queue.name, exchange=queue.exchange, routing_key=key)


def declare_topology(channel, options: QueueOptions = QueueOptions()) -> None:
    """Declare every exchange and shared queue with its bindings on a pika channel (idempotent).

    Ingest queues are not among them: each replica declares its own, and the balancer
    deletes the queue of a replica that left once it is empty. Declared by every process,
    they would come back as fast as they go, and a bind could meet a queue just deleted.
    """
    declare_exchanges(channel)
    for queue in shared_queues(options):
        declare_queue(channel, queue)
