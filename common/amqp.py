"""RabbitMQ helpers shared by every service: connections, a confirming publisher,
dead-lettering with a reason, and a reconnect loop with a capped back-off.

One pika connection belongs to one thread; nothing here shares a connection.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator

import pika
import pika.exceptions

from common.backoff import Backoff
from common.health import HEALTH
from common.logs import log_event
from common.messages import printable_reason
from common.metrics import BROKER_RECONNECTS, count_dead_letter
from common.settings import Settings
from common.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    QueueOptions,
    declare_topology,
)

logger = logging.getLogger(__name__)

PERSISTENT = pika.DeliveryMode.Persistent

# Errors after which a fresh connection is the only way on.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


class PublishNotConfirmed(RuntimeError):
    """The broker refused (nacked) or could not route a message."""


# pika decodes nested header tables recursively, two Python frames a level. One frame
# (128 KiB) holds at most ~18,700 levels (7 bytes each), which Python's default limit of
# 1,000 frames cannot decode: the connection would drop and the broker redeliver the same
# message for ever. Python 3.11 runs pure-Python recursion off the C stack, so a higher
# limit only costs memory while such a message is decoded.
HEADER_DECODING_RECURSION_LIMIT = 40_000


# A broker that does not answer a connect within this is skipped for the next one.
BROKER_CONNECT_TIMEOUT_SECONDS = 5


def broker_urls(amqp_url: str) -> list[str]:
    """Return one URL per broker of `amqp_url`, in order.

    EMS_AMQP_URL names one broker, or a cluster's brokers as comma-separated
    hosts sharing one user, password and virtual host:
    `amqp://user:password@rabbit1:5672,rabbit2:5672,rabbit3:5672/%2F`.
    """
    scheme, separator, rest = amqp_url.partition("://")
    if not separator:
        return [amqp_url]
    netloc, slash, path = rest.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    listed = [f"{scheme}://{credentials}{at}{host.strip()}{slash}{path}"
              for host in hosts.split(",") if host.strip()]
    return listed or [amqp_url]  # no host named: pika's default one


def kombu_url(amqp_url: str) -> str:
    """Return the brokers of `amqp_url` as kombu's failover list (`;`-separated URLs)."""
    return ";".join(broker_urls(amqp_url))


def connection_parameters(settings: Settings) -> list[pika.URLParameters]:
    """Return pika connection parameters for each configured broker, in order."""
    if sys.getrecursionlimit() < HEADER_DECODING_RECURSION_LIMIT:
        sys.setrecursionlimit(HEADER_DECODING_RECURSION_LIMIT)
    every_broker = []
    for url in broker_urls(settings.amqp_url):
        parameters = pika.URLParameters(url)
        parameters.heartbeat = settings.amqp_heartbeat_seconds
        parameters.blocked_connection_timeout = 60
        parameters.connection_attempts = 1
        parameters.socket_timeout = BROKER_CONNECT_TIMEOUT_SECONDS
        every_broker.append(parameters)
    return every_broker


class BrokerRotation:
    """The configured brokers in turn, for connections that take one broker's parameters.

    pika's asynchronous connections (balancer, simulator) connect to one broker;
    each new connection takes the next, so that after losing one broker the
    reconnect goes to another (the blocking `connect` tries them all itself).
    """

    def __init__(self, settings: Settings):
        self._brokers = connection_parameters(settings)
        self._turn = -1

    def next_parameters(self) -> pika.URLParameters:
        """Return the parameters of the broker whose turn it is."""
        self._turn = (self._turn + 1) % len(self._brokers)
        return self._brokers[self._turn]


def connect(settings: Settings, declare: bool = True) -> pika.BlockingConnection:
    """Open a blocking connection to the first broker that answers and, by default,
    declare the whole topology.

    A service connected as its own broker user declares nothing: it has no right
    to, and `python -m migrations upgrade` declared the topology before it started
    (common/broker_users.py). Only an administrator's connection declares (tests).
    """
    connection = pika.BlockingConnection(connection_parameters(settings))
    if declare and not settings.amqp_service:
        channel = connection.channel()
        declare_topology(channel, QueueOptions.from_settings(settings))
        channel.close()
    return connection


def message_properties(headers: dict | None = None, **extra) -> pika.BasicProperties:
    """Return the properties of a persistent JSON message."""
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        headers=headers or None,
        **extra,
    )


class ConfirmingPublisher:
    """Publish persistent messages that the broker has confirmed before returning.

    The connection is opened lazily and reopened after a failure, so a caller
    that retries a failed `publish` gets a new connection.
    """

    def __init__(self, settings: Settings, declare: bool = True):
        self.settings = settings
        self.declare = declare
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _ensure_channel(self):
        if self._channel is None or self._channel.is_closed:
            self.close()
            self._connection = connect(self.settings, declare=self.declare)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict | None = None,
                **properties) -> None:
        """Publish one message and wait for the broker's confirm; raise if it is refused."""
        channel = self._ensure_channel()
        try:
            channel.basic_publish(
                exchange=exchange,
                routing_key=routing_key,
                body=body,
                properties=message_properties(headers, **properties),
                mandatory=True,
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
            raise PublishNotConfirmed(f"{exchange}/{routing_key}: {error}") from error
        except CONNECTION_ERRORS:
            self.close()
            raise

    def process_events(self) -> None:
        """Service heartbeats while idle (a blocking connection needs it now and then)."""
        if self._connection is not None and self._connection.is_open:
            self._connection.process_data_events(time_limit=0)

    def close(self) -> None:
        """Close the connection, ignoring one that is already gone."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except CONNECTION_ERRORS:
                pass


def take_all(channel, queue: str) -> Iterator[tuple]:
    """Take (and ack) every message now in `queue`: yield (method, properties, body) of each."""
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return
        yield method, properties, body


def internal_error_reason(error: BaseException) -> str:
    """Return the dead-letter reason for a message whose handling raised an unexpected error."""
    return f"internal-error: {type(error).__name__}"


def dead_letter(channel, source_queue: str, routing_key: str, body: bytes, reason: str,
                properties: pika.BasicProperties | None = None) -> None:
    """Publish a rejected message to the dead-letter exchange with the reason in a header.

    The channel must be in confirm mode so that the caller acks the original only
    after the dead letter is safely stored.
    """
    headers = dict((properties.headers or {}) if properties else {})
    headers[DEAD_LETTER_REASON_HEADER] = printable_reason(reason)
    headers[DEAD_LETTER_SOURCE_HEADER] = source_queue
    channel.basic_publish(
        exchange=DEAD_LETTER_EXCHANGE,
        routing_key=f"{source_queue}.{routing_key}",
        body=body,
        properties=pika.BasicProperties(
            content_type=properties.content_type if properties else None,
            delivery_mode=PERSISTENT,
            headers=headers,
        ),
        mandatory=True,
    )
    count_dead_letter(source_queue, reason)


def run_with_reconnect(work: Callable[[], None], name: str,
                       should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run `work` again and again after connection failures, backing off up to a cap.

    `work` opens its own connection and returns only when it is done for good.
    """
    backoff = Backoff()
    while not should_stop():
        backoff.started()
        try:
            work()
            return
        except CONNECTION_ERRORS as error:
            HEALTH.set_ready(False)
            BROKER_RECONNECTS.inc()
            delay = backoff.next_delay()  # a connection that lived a while starts it over
            log_event(logger, "amqp.reconnect", level=logging.WARNING, worker=name,
                      error=type(error).__name__, retry_in=round(delay, 1))
            time.sleep(delay)
