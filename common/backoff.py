"""A capped exponential back-off with jitter, for every loop that retries a broker or database.

Like pika's reconnecting consumer (`_get_reconnect_delay`): each failure waits
longer, up to a cap, and a try that stayed healthy for a while starts the
back-off over. The jitter takes up to a fifth off each wait, so replicas that
lost the same broker do not all come back in the same instant.
"""

from __future__ import annotations

import random
import time

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 15.0
# A connection or loop that lived this long was healthy: its failure starts the back-off over.
HEALTHY_AFTER_SECONDS = 30.0
JITTER = 0.2


class Backoff:
    """The delays between tries: first, twice that, … up to `cap`, each shortened by a little jitter."""

    def __init__(self, first: float = FIRST_DELAY_SECONDS, cap: float = MAX_DELAY_SECONDS,
                 healthy_after: float = HEALTHY_AFTER_SECONDS, jitter: float = JITTER):
        self.first = first
        self.cap = cap
        self.healthy_after = healthy_after
        self.jitter = jitter
        self._next = first
        self._started: float | None = None  # when the current try began, if the caller says

    def started(self) -> None:
        """Note that a try begins now: one that lasts `healthy_after` starts the back-off over."""
        self._started = time.monotonic()

    def reset(self) -> None:
        """Start over from the first delay: the last try worked."""
        self._next = self.first

    def next_delay(self) -> float:
        """Return how long to wait after a failed try, and lengthen the wait after the next one."""
        if self._started is not None and time.monotonic() - self._started >= self.healthy_after:
            self._next = self.first
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay * (1 - random.uniform(0, self.jitter))
