"""Liveness and readiness of a background worker, as its loop and its consumer report them.

A worker is *alive* while its loop keeps turning and its consumer is not stuck:
holding deliveries with nothing acked for `stuck_seconds` (a store that hangs, a
lock never granted) is as dead as a frozen process, only Swarm cannot tell
without asking. It is *ready* while connected to the broker and the database
and consuming. The metrics port serves both (common/metrics.py): `/healthz`,
`/readyz`.

One `WorkerHealth` per process, `HEALTH`, like prometheus_client's one registry:
the loop, the consumer callbacks and the reconnect loop that report into it
live in different modules and would otherwise have to pass it through every
constructor.
"""

from __future__ import annotations

import os
import threading
import time

# Test-only fault injection: a consumer that takes deliveries and never acks them,
# while its process and loop stay alive (the stuck consumer the health check must see).
FAULT_STALL_CONSUMER = "EMS_FAULT_STALL_CONSUMER"


class WorkerHealth:
    """What a worker's loop and consumer last reported, and the verdicts drawn from it."""

    def __init__(self, stuck_seconds: float = 120.0, clock=time.monotonic):
        self.stuck_seconds = stuck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last_turn = clock()
        self._holding_since: float | None = None
        self._ready = False

    def turned(self) -> None:
        """Record that the worker's loop went round once more."""
        self._last_turn = self._clock()

    def set_ready(self, ready: bool) -> None:
        """Record whether the worker is connected to the broker and database and consuming."""
        self._ready = ready
        if not ready:
            # Unacked deliveries go back to the queue with the connection.
            with self._lock:
                self._holding_since = None

    def received(self) -> None:
        """Record a delivery taken (cheap: called for every message)."""
        if self._holding_since is None:
            with self._lock:
                if self._holding_since is None:
                    self._holding_since = self._clock()

    def acked(self, still_holding: bool = False) -> None:
        """Record an ack; `still_holding` when deliveries taken since are still unacked."""
        with self._lock:
            self._holding_since = self._clock() if still_holding else None

    def liveness(self) -> tuple[bool, str]:
        """Return whether the worker is alive and why not."""
        now = self._clock()
        if now - self._last_turn > self.stuck_seconds:
            return False, f"loop has not turned for {now - self._last_turn:.0f} s"
        holding_since = self._holding_since
        if holding_since is not None and now - holding_since > self.stuck_seconds:
            return False, f"deliveries held and nothing acked for {now - holding_since:.0f} s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        """Return whether the worker is ready (connected, consuming, alive) and why not."""
        alive, reason = self.liveness()
        if not alive:
            return False, reason
        if not self._ready:
            return False, "not connected to the broker and database"
        return True, "ok"


HEALTH = WorkerHealth()


def configure(stuck_seconds: float) -> WorkerHealth:
    """Set the process's stuck threshold (from EMS_STUCK_SECONDS) and return its health."""
    HEALTH.stuck_seconds = stuck_seconds
    return HEALTH


def consumer_stalled() -> bool:
    """Return whether the test-only fault that stalls a consumer is switched on."""
    return os.environ.get(FAULT_STALL_CONSUMER) == "1"
