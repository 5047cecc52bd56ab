"""The balancer deletes the quorum ingest queue of a replica that is gone, though quorum
queues refuse a delete "if empty and unused": it unbinds the queue, looks once more,
then deletes it. A queue that still has a consumer stays, bound. Real balancer process,
real RabbitMQ, a virtual host of the test's own."""

from __future__ import annotations

import dataclasses
import secrets

import pika.exceptions
import pytest

from common.amqp import connect
from common.topology import QueueOptions, declare_queue, ingest_queue, ingest_queue_definition
from tests.isolation import own_vhost
from tests.processes import ServiceProcess, python_module, wait_for

# Startup listening, the time a replica has to be heard, then three empty looks 2 s apart.
DELETED_WITHIN_SECONDS = 60


@pytest.fixture
def quorum(settings):
    """Give a test settings declaring quorum queues, on a virtual host of its own."""
    with own_vhost("orphan-" + secrets.token_hex(3)) as amqp_url:
        yield dataclasses.replace(settings, amqp_url=amqp_url, queue_type="quorum", monitor_replicas=2)


def queue_exists(connection, name: str) -> bool:
    """Tell whether queue `name` exists (a passive declare)."""
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return False


def test_the_balancer_deletes_a_gone_replicas_quorum_queue_and_keeps_one_still_consumed(quorum):
    connection = connect(quorum)
    balancer = ServiceProcess(python_module("balancer"), name="balancer-orphans",
                              env={"EMS_AMQP_URL": quorum.amqp_url, "EMS_QUEUE_TYPE": "quorum",
                                   "EMS_MONITOR_REPLICAS": "2"})
    try:
        channel = connection.channel()
        for replica in (1, 2):
            declare_queue(channel, ingest_queue_definition(replica, QueueOptions.from_settings(quorum)))
        # Replica 2 is silent but still consuming (say, reconnecting): its queue must stay.
        channel.basic_consume(ingest_queue(2), lambda *delivery: None)
        balancer.start()

        def replica_1_queue_gone() -> bool:
            connection.process_data_events(time_limit=0.2)
            return not queue_exists(connection, ingest_queue(1))
        wait_for(replica_1_queue_gone, DELETED_WITHIN_SECONDS, f"ingest.1 deleted\n{balancer.log()[-3000:]}")

        publisher = connection.channel()
        publisher.confirm_delivery()
        publisher.basic_publish("ems.ingest", "replica.2", b"still routed", mandatory=True)
        with pytest.raises(pika.exceptions.UnroutableError):
            publisher.basic_publish("ems.ingest", "replica.1", b"nowhere", mandatory=True)
        assert queue_exists(connection, ingest_queue(2))
        assert balancer.running, balancer.log()[-3000:]
    finally:
        balancer.stop()
        connection.close()
