"""Which monitor replicas are alive, from the heartbeats they publish on `ems.control`.

Every replica announces itself about once a second (`membership.<n>`, state
`active` or, once told to stop, `draining`). The balancer routes only to the
replicas whose last `active` heartbeat is recent; one that falls silent or
says it is draining drops out of the live set at once, and the queue it
leaves behind is an orphan that the balancer empties and deletes. A plain
class without I/O: the clock is passed in, so the rules have unit tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# A replica silent for longer than this is no longer routed to (heartbeats come every second).
LIVE_SECONDS = 3.0

ACTIVE, DRAINING = "active", "draining"
HEARTBEAT_STATES = (ACTIVE, DRAINING)


@dataclass(frozen=True)
class Heartbeat:
    replica: int
    state: str
    instance: str = ""

    def to_json(self) -> bytes:
        """Return the heartbeat as a message body."""
        return json.dumps({"replica": self.replica, "state": self.state, "instance": self.instance}).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Heartbeat:
        """Parse a heartbeat body; raise ValueError if it is not one."""
        fields = json.loads(body)
        if not isinstance(fields, dict):
            raise ValueError(f"not a heartbeat: {body[:100]!r}")
        replica, state = fields.get("replica"), fields.get("state")
        is_number = isinstance(replica, int) and not isinstance(replica, bool)
        if not is_number or replica < 1 or state not in HEARTBEAT_STATES:
            raise ValueError(f"not a heartbeat: {body[:100]!r}")
        return cls(replica, state, str(fields.get("instance", ""))[:100])


class Membership:
    """The replicas heard of, and which of them are live at a given moment."""

    def __init__(self, live_seconds: float = LIVE_SECONDS):
        self.live_seconds = live_seconds
        self._last: dict[int, tuple[float, str]] = {}  # replica -> (when heard, state)

    def heard(self, heartbeat: Heartbeat, now: float) -> None:
        """Record a heartbeat received at `now`."""
        self._last[heartbeat.replica] = (now, heartbeat.state)

    def live(self, now: float) -> tuple[int, ...]:
        """Return the replicas to route to: an `active` heartbeat within `live_seconds`, in order."""
        return tuple(sorted(replica for replica, (when, state) in self._last.items()
                            if state == ACTIVE and now - when <= self.live_seconds))

    def known(self) -> set[int]:
        """Return every replica heard of and not forgotten."""
        return set(self._last)

    def state(self, replica: int, now: float) -> str:
        """Return `active`, `draining` (said so, or silent: its queue may hold readings) or `gone`."""
        if replica not in self._last:
            return "gone"
        return ACTIVE if replica in self.live(now) else DRAINING

    def forget(self, replica: int) -> None:
        """Forget a replica whose queue is gone (deleted once empty)."""
        self._last.pop(replica, None)
