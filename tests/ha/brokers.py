"""Helpers of the broker tests in tests/ha."""

from __future__ import annotations

from common.amqp import take_all

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
