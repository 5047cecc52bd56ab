"""The broker step of `python -m migrations upgrade`: queues declared before the length
limits existed are replaced by bounded ones, every message kept, on the real RabbitMQ."""

from __future__ import annotations

import dataclasses
import secrets

import pika
import pika.exceptions
import pytest

from common.amqp import connect
from common.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTERS_QUEUE,
    READING_ROUTING_KEY,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    QueueOptions,
    declare_exchanges,
    queue_arguments,
    queues,
)
from migrations.broker import BrokerUpgradeError, holding_queue, upgrade_broker
from tests.isolation import own_vhost

READINGS_LIMIT = 10
DEAD_LETTERS_LIMIT = 20


@pytest.fixture
def broker(settings):
    """Give a test settings on a virtual host of its own, with small queue limits."""
    with own_vhost("upgrade-" + secrets.token_hex(3)) as amqp_url:
        yield dataclasses.replace(settings, amqp_url=amqp_url, readings_queue_max_length=READINGS_LIMIT,
                                  dead_letters_max_length=DEAD_LETTERS_LIMIT)


def declare_old_layout(channel) -> None:
    """Declare readings.incoming and dead.letters as they were before the limits."""
    declare_exchanges(channel)
    channel.queue_declare(READINGS_QUEUE, durable=True,
                          arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE})
    channel.queue_bind(READINGS_QUEUE, READINGS_EXCHANGE, routing_key=READING_ROUTING_KEY)
    channel.queue_declare(DEAD_LETTERS_QUEUE, durable=True)
    channel.queue_bind(DEAD_LETTERS_QUEUE, DEAD_LETTER_EXCHANGE, routing_key="#")


def publish(channel, exchange: str, routing_key: str, bodies: list[bytes], reason: str = "") -> None:
    """Publish persistent messages with confirms, each with a header to check later."""
    for body in bodies:
        channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(
            delivery_mode=2, headers={"x-ems-reason": reason or body.decode()}), mandatory=True)


def take_all(channel, queue: str) -> list[tuple[bytes, str]]:
    """Take every message of `queue`: (body, reason header), in queue order."""
    taken = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return taken
        taken.append((body, properties.headers["x-ems-reason"]))


def declares_with(connection, queue_name: str, arguments: dict) -> bool:
    """Tell whether the broker accepts `queue_name` declared with exactly `arguments`."""
    channel = connection.channel()
    try:
        channel.queue_declare(queue_name, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 406
        return False
    channel.close()
    return True


def test_old_queues_are_replaced_by_bounded_ones_with_every_message_kept(broker):
    readings = [f"reading-{n}".encode() for n in range(8)]
    letters = [f"letter-{n}".encode() for n in range(5)]
    connection = connect(broker, declare=False)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_old_layout(channel)
        publish(channel, READINGS_EXCHANGE, READING_ROUTING_KEY, readings)
        publish(channel, DEAD_LETTER_EXCHANGE, "ingest.1.reading", letters)
        new = {q.name: queue_arguments(q) for q in queues(3, QueueOptions.from_settings(broker))}
        assert not declares_with(connection, READINGS_QUEUE, new[READINGS_QUEUE])

        replaced = upgrade_broker(broker)

        assert set(replaced) == {READINGS_QUEUE, DEAD_LETTERS_QUEUE}
        assert declares_with(connection, READINGS_QUEUE, new[READINGS_QUEUE])
        assert declares_with(connection, DEAD_LETTERS_QUEUE, new[DEAD_LETTERS_QUEUE])
        channel = connection.channel()
        channel.confirm_delivery()
        # The binding is back and the limit holds: two more fit, the third is refused.
        publish(channel, READINGS_EXCHANGE, READING_ROUTING_KEY, [b"reading-8", b"reading-9"])
        with pytest.raises(pika.exceptions.NackError):
            publish(channel, READINGS_EXCHANGE, READING_ROUTING_KEY, [b"reading-10"])
        channel = connection.channel()
        assert take_all(channel, READINGS_QUEUE) == [(body, body.decode()) for body in
                                                     [*readings, b"reading-8", b"reading-9"]]
        assert take_all(channel, DEAD_LETTERS_QUEUE) == [(body, body.decode()) for body in letters]
        assert upgrade_broker(broker) == [], "a second upgrade has nothing to do"
    finally:
        connection.close()


def test_an_interrupted_upgrade_is_finished_by_the_next_one(broker):
    # As if the last run stopped after deleting readings.incoming: its messages wait in the holding queue.
    held = [f"reading-{n}".encode() for n in range(3)]
    connection = connect(broker, declare=False)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_exchanges(channel)
        channel.queue_declare(holding_queue(READINGS_QUEUE), durable=True)
        channel.queue_bind(holding_queue(READINGS_QUEUE), READINGS_EXCHANGE, routing_key=READING_ROUTING_KEY)
        publish(channel, READINGS_EXCHANGE, READING_ROUTING_KEY, held)

        upgrade_broker(broker)

        assert take_all(connection.channel(), READINGS_QUEUE) == [(body, body.decode()) for body in held]
        probe = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            probe.queue_declare(holding_queue(READINGS_QUEUE), passive=True)
    finally:
        connection.close()


def test_a_queue_with_consumers_is_left_alone(broker):
    connection = connect(broker, declare=False)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_old_layout(channel)
        publish(channel, READINGS_EXCHANGE, READING_ROUTING_KEY, [b"reading-0"])
        channel.basic_consume(READINGS_QUEUE, lambda *delivery: None)

        with pytest.raises(BrokerUpgradeError, match="consumer"):
            upgrade_broker(broker)

        assert declares_with(connection, READINGS_QUEUE, {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE})
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            connection.channel().queue_declare(holding_queue(READINGS_QUEUE), passive=True)
    finally:
        connection.close()
