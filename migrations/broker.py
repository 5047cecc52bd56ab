"""Bring the broker's queues to the topology's declaration without losing a message.

A queue's arguments (length limit, overflow policy) are fixed when it is
created: declaring it again with other ones fails with PRECONDITION_FAILED
(406), and every process would then fail at start-up. So this step, run by
`python -m migrations upgrade` before the services start, finds each queue
declared with other arguments and replaces it:

1. a holding queue `<name>.upgrade` takes the queue's bindings, so readings
   published meanwhile land there;
2. the old queue loses its bindings, its messages move to the holding queue
   (each republished with its properties, acked only after the broker's confirm);
3. the old queue is deleted (only if it is empty and unused) and declared anew;
4. the holding queue's messages move back and it is deleted.

Nothing is acked before its copy is confirmed, so a crash at any moment can
only repeat a message (the pipeline stores readings idempotently). A holding
queue left by an interrupted run is emptied into its queue on the next run.
A queue that has consumers is not touched: stop them first (they would lose
their unacked messages with the queue). If the new length limit is smaller
than the backlog, `readings.incoming` refuses the excess: it stays in the
holding queue, and the next run moves it once the balancer has drained some.

Last, it creates each service's broker user with the permissions of
common/broker_users.py (or resets its password and permissions), through the
management API as the administrator of EMS_AMQP_URL.
"""

from __future__ import annotations

import logging

import pika
import pika.exceptions

from common.amqp import connect
from common.broker_users import ensure_users
from common.logs import log_event
from common.settings import Settings
from common.topology import Queue, QueueOptions, declare_exchanges, declare_topology, queue_arguments, queues

logger = logging.getLogger(__name__)

PRECONDITION_FAILED = 406
NOT_FOUND = 404
HOLDING_SUFFIX = ".upgrade"
# Messages handed to the mover ahead of the one it copies, and how long it waits for one.
MOVE_PREFETCH = 100
MOVE_WAIT_SECONDS = 5.0


class BrokerUpgradeError(RuntimeError):
    """A queue could not be brought to its declaration; nothing was lost."""


def holding_queue(name: str) -> str:
    """Return the name of the queue that holds `name`'s messages while it is replaced."""
    return name + HOLDING_SUFFIX


def upgrade_broker(settings: Settings) -> list[str]:
    """Replace every queue declared with other arguments; return the names replaced."""
    connection = connect(settings, declare=False)
    replaced = []
    try:
        channel = connection.channel()
        declare_exchanges(channel)
        for queue in queues(settings.monitor_replicas, QueueOptions.from_settings(settings)):
            if not _declared_as_wanted(connection, queue):
                _replace(connection, queue)
                replaced.append(queue.name)
                log_event(logger, "migrations.queue_replaced", queue=queue.name,
                          arguments=queue_arguments(queue))
            _empty_holding_queue(connection, queue)
        declare_topology(channel, QueueOptions.from_settings(settings))
    finally:
        connection.close()
    if settings.amqp_passwords:
        # The services connect as these users and declare nothing: the topology is there now.
        users = ensure_users(settings.amqp_url, settings.amqp_user_prefix, settings.amqp_passwords,
                             settings.amqp_management_port)
        log_event(logger, "migrations.broker_users", users=",".join(users))
    return replaced


def _declared_as_wanted(connection, queue: Queue) -> bool:
    """Declare `queue`; tell whether the broker already had it with other arguments."""
    channel = connection.channel()
    try:
        channel.queue_declare(queue.name, durable=True, arguments=queue_arguments(queue))
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == PRECONDITION_FAILED:
            return False
        raise
    channel.close()
    return True


def _queue_exists(connection, name: str) -> bool:
    channel = connection.channel()
    # A missing queue is the usual answer here: pika would log each one as a warning.
    pika_channel_log = logging.getLogger("pika.channel")
    level = pika_channel_log.level
    pika_channel_log.setLevel(logging.ERROR)
    try:
        channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == NOT_FOUND:
            return False
        raise
    finally:
        pika_channel_log.setLevel(level)
    channel.close()
    return True


def _bind(channel, name: str, queue: Queue) -> None:
    for key in queue.routing_keys:
        channel.queue_bind(name, queue.exchange, routing_key=key)


def _unbind(channel, name: str, queue: Queue) -> None:
    for key in queue.routing_keys:
        channel.queue_unbind(name, queue.exchange, routing_key=key)


def _replace(connection, queue: Queue) -> None:
    """Replace `queue` by one with its declared arguments, its messages moved over and back."""
    channel = connection.channel()
    channel.confirm_delivery()
    consumers = channel.queue_declare(queue.name, passive=True).method.consumer_count
    if consumers:
        raise BrokerUpgradeError(f"{queue.name} has {consumers} consumer(s): stop them, then upgrade again")
    holding = holding_queue(queue.name)
    # No limit on the holding queue: it must accept whatever the old queue holds.
    channel.queue_declare(holding, durable=True)
    _bind(channel, holding, queue)
    _unbind(channel, queue.name, queue)
    moved = _move(channel, queue.name, holding)
    _delete_empty_unbound(channel, queue.name)
    channel.queue_declare(queue.name, durable=True, arguments=queue_arguments(queue))
    _bind(channel, queue.name, queue)
    log_event(logger, "migrations.queue_held", queue=queue.name, messages=moved)


def _empty_holding_queue(connection, queue: Queue) -> None:
    """Move the messages of `queue`'s holding queue (if any) into it and delete the holding queue."""
    holding = holding_queue(queue.name)
    if not _queue_exists(connection, holding):
        return
    channel = connection.channel()
    channel.confirm_delivery()
    # The queue may be new (a run interrupted after deleting the old one): bind it first.
    _bind(channel, queue.name, queue)
    _unbind(channel, holding, queue)
    try:
        moved = _move(channel, holding, queue.name)
    except pika.exceptions.NackError as error:
        raise BrokerUpgradeError(
            f"{queue.name} is full (its new length limit is below the backlog): the rest waits in "
            f"{holding}; upgrade again once it has drained") from error
    _delete_empty_unbound(channel, holding)
    log_event(logger, "migrations.queue_restored", queue=queue.name, messages=moved)


def _delete_empty_unbound(channel, name: str) -> None:
    """Delete queue `name`, which has no bindings left, once it is seen empty and unused.

    Quorum queues refuse the broker's own guard (a delete `if_empty`/`if_unused`, RabbitMQ
    3.10), so the guard is a look just before: unbound, nothing new can land in between.
    """
    state = channel.queue_declare(name, passive=True).method
    if state.message_count or state.consumer_count:
        raise BrokerUpgradeError(f"{name} got a consumer or a message while being replaced "
                                 f"({state.consumer_count} consumer(s), {state.message_count} message(s)); "
                                 "upgrade again")
    channel.queue_delete(name)


def _move(channel, source: str, target: str) -> int:
    """Move every message of `source` (unbound: no more arrive) to `target` in order, keeping
    its properties; return how many.

    Each copy is confirmed by the broker before its original is acked. Taken by a
    consumer, not `basic_get`: a quorum queue with a single active consumer refuses gets.
    """
    waiting = channel.queue_declare(source, passive=True).method.message_count
    if not waiting:
        return 0
    moved = 0
    channel.basic_qos(prefetch_count=MOVE_PREFETCH)
    try:
        for method, properties, body in channel.consume(source, inactivity_timeout=MOVE_WAIT_SECONDS):
            if method is None:  # the broker counted a message it no longer holds
                return moved
            try:
                channel.basic_publish("", target, body, properties, mandatory=True)
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                channel.basic_nack(method.delivery_tag, requeue=True)
                raise
            channel.basic_ack(method.delivery_tag)
            moved += 1
            if moved == waiting:
                return moved
    finally:
        # Deliveries not yet taken (prefetched behind a refused one) go back to `source`.
        channel.cancel()
    return moved
