"""Every kind of broker client given several brokers, the first one dead, connects
through the next: pika (blocking and asynchronous), kombu (the Socket.IO message
queue) and stomp.py (the alert bridge). On the real RabbitMQ, on a virtual host of
this test's own; the dead broker is a closed port or a name that does not resolve."""

from __future__ import annotations

import dataclasses
import json
import queue
import secrets
import threading

import pytest

from common.amqp import ConfirmingPublisher, broker_urls, connect, kombu_url, take_all
from common.messages import Alert
from common.realtime import SOCKETIO_CHANNEL, socketio_emitter, user_room
from common.topology import (
    ALERTS_EXCHANGE,
    READING_ROUTING_KEY,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    alert_routing_key,
)
from notifier.alerts import AlertBridge
from simulator.publisher import ConfirmedBurstPublisher
from tests.ha.brokers import take_when_there, with_dead_broker_first
from tests.isolation import own_vhost

# A broker host that no resolver knows (RFC 2606): the first address of the list, dead.
UNKNOWN_HOST = "broker-gone.invalid"


@pytest.fixture(scope="module")
def two_brokers(settings):
    """Give the tests settings naming a dead broker, then a virtual host of their own."""
    with own_vhost("failover-" + secrets.token_hex(3)) as amqp_url:
        # Quorum queues, as in a cluster: the alert bridge's STOMP subscription is to one.
        yield dataclasses.replace(settings, amqp_url=with_dead_broker_first(amqp_url),
                                  stomp_host=f"{UNKNOWN_HOST},127.0.0.1", queue_type="quorum")


def test_a_list_of_brokers_is_one_url_per_broker_with_the_same_user_and_virtual_host():
    assert broker_urls("amqp://ems:p%40ss@rabbit1:5672,rabbit2, rabbit3:5673/%2F?heartbeat=30") == [
        "amqp://ems:p%40ss@rabbit1:5672/%2F?heartbeat=30",
        "amqp://ems:p%40ss@rabbit2/%2F?heartbeat=30",
        "amqp://ems:p%40ss@rabbit3:5673/%2F?heartbeat=30",
    ]
    assert broker_urls("amqp://guest:guest@127.0.0.1:5672/%2F") == ["amqp://guest:guest@127.0.0.1:5672/%2F"]
    assert kombu_url("amqp://u:p@a,b/v") == "amqp://u:p@a/v;amqp://u:p@b/v"


def readings_waiting(settings) -> list[bytes]:
    """Take every reading in readings.incoming; return the bodies."""
    connection = connect(settings)
    try:
        return [body for _method, _properties, body in take_all(connection.channel(), READINGS_QUEUE)]
    finally:
        connection.close()


def test_blocking_and_asynchronous_pika_clients_publish_through_the_second_broker(two_brokers):
    blocking = ConfirmingPublisher(two_brokers)
    try:
        blocking.publish(READINGS_EXCHANGE, READING_ROUTING_KEY, b'"blocking"')
    finally:
        blocking.close()
    bodies = [json.dumps({"n": n}).encode() for n in range(200)]
    # The simulator's (and the balancer's) asynchronous connection: each new one takes the next broker.
    summary = ConfirmedBurstPublisher(two_brokers, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all(bodies)

    assert summary.confirmed == len(bodies)
    assert readings_waiting(two_brokers) == [b'"blocking"', *bodies]


def test_the_socketio_message_queue_emits_through_the_second_broker(two_brokers):
    connection = connect(two_brokers)
    try:
        channel = connection.channel()
        # Listen on the exchange every Socket.IO process listens on (kombu's fanout).
        channel.exchange_declare(SOCKETIO_CHANNEL, "fanout", durable=False)
        heard = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(heard, SOCKETIO_CHANNEL)

        socketio_emitter(two_brokers).emit("alert", {"n": 1}, room=user_room(7))

        messages = take_when_there(connection, heard)
    finally:
        connection.close()
    [(_method, _properties, body)] = messages
    assert b'"alert"' in body and user_room(7).encode() in body


def test_the_alert_bridge_subscribes_through_the_second_stomp_host(two_brokers):
    connect(two_brokers).close()  # the topology, as migrations declare it
    emitted: queue.Queue = queue.Queue()
    bridge = AlertBridge(two_brokers, lambda event, payload, to: emitted.put(payload))
    running = threading.Thread(target=bridge.run, daemon=True)
    running.start()
    publisher = ConfirmingPublisher(two_brokers)
    try:
        alert = Alert(alert_id=secrets.randbelow(10**9), user_id=7,
                      device_id="0b6d5c7e-0000-4000-8000-000000000001", device_name="Heat pump",
                      hour_start="2026-11-26T17:00:00+00:00", kwh=3.25, limit_kwh=2.5)
        publisher.publish(ALERTS_EXCHANGE, alert_routing_key(alert.user_id), alert.to_json())
        payload = emitted.get(timeout=30)
    finally:
        publisher.close()
        bridge.stop()
    assert payload["alert_id"] == alert.alert_id
