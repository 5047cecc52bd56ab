"""Helpers of the broker tests in tests/ha."""

from __future__ import annotations

from urllib.parse import urlsplit

from common.amqp import take_all
from tests.processes import free_port

WAIT_SECONDS = 5.0
LOOK_EVERY_SECONDS = 0.1


def take_when_there(connection, queue: str) -> list[tuple]:
    """Take the messages of `queue` once any are there (the broker may route them a moment
    later); return (method, properties, body) of each, or [] after a few seconds."""
    for _ in range(int(WAIT_SECONDS / LOOK_EVERY_SECONDS)):
        taken = list(take_all(connection.channel(), queue))
        if taken:
            return taken
        connection.sleep(LOOK_EVERY_SECONDS)
    return []


def with_dead_broker_first(amqp_url: str) -> str:
    """Return `amqp_url` listing first a broker on a closed port, then the real one."""
    parts = urlsplit(amqp_url)
    credentials, _at, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{credentials}@127.0.0.1:{free_port()},{host}").geturl()
