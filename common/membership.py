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

from common.messages import InvalidMessage, load_json_object

# A replica silent for longer than this is no longer routed to. Heartbeats come twice a
# second; a replica held to a small CPU share on a busy machine was seen silent for 3 s.
LIVE_SECONDS = 4.0
# A replica heard for less than this is shown as joining.
JOINING_SECONDS = 5.0

# Far more replicas than anyone runs: a heartbeat naming a higher one is refused.
MAX_REPLICA = 1000

ACTIVE, DRAINING = "active", "draining"
JOINING, GONE = "joining", "gone"
HEARTBEAT_STATES = (ACTIVE, DRAINING)


@dataclass(frozen=True)
class Heartbeat:
    replica: int
    state: str
    instance: str = ""
    # Seconds the first reading of the replica's last batch had waited since the balancer routed it.
    lag_seconds: float = 0.0

    def to_json(self) -> bytes:
        """Return the heartbeat as a message body."""
        return json.dumps({"replica": self.replica, "state": self.state, "instance": self.instance,
                           "lag_seconds": self.lag_seconds}).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Heartbeat:
        """Parse a heartbeat body; raise ValueError (InvalidMessage) if it is not one."""
        fields = load_json_object(body)
        replica, state = fields.get("replica"), fields.get("state")
        is_number = isinstance(replica, int) and not isinstance(replica, bool)
        if not is_number or not 1 <= replica <= MAX_REPLICA or state not in HEARTBEAT_STATES:
            raise InvalidMessage(f"not a heartbeat: {body[:100]!r}")
        lag = fields.get("lag_seconds", 0.0)
        is_lag = isinstance(lag, (int, float)) and not isinstance(lag, bool) and 0 <= lag < 1e9
        lag = float(lag) if is_lag else 0.0
        return cls(replica, state, str(fields.get("instance", ""))[:100], lag)


class Membership:
    """The replicas heard of, and which of them are live at a given moment."""

    def __init__(self, live_seconds: float = LIVE_SECONDS):
        self.live_seconds = live_seconds
        self._last: dict[int, tuple[float, str]] = {}  # replica -> (when heard, state)
        self._first: dict[int, float] = {}  # replica -> when heard first (since it was last forgotten)
        self.lag_seconds: dict[int, float] = {}

    def heard(self, heartbeat: Heartbeat, now: float) -> None:
        """Record a heartbeat received at `now`."""
        if heartbeat.replica not in self.live(now):
            self._first[heartbeat.replica] = now
        self._last[heartbeat.replica] = (now, heartbeat.state)
        self.lag_seconds[heartbeat.replica] = heartbeat.lag_seconds

    def live(self, now: float) -> tuple[int, ...]:
        """Return the replicas to route to: an `active` heartbeat within `live_seconds`, in order."""
        return tuple(sorted(replica for replica, (when, state) in self._last.items()
                            if state == ACTIVE and now - when <= self.live_seconds))

    def known(self) -> set[int]:
        """Return every replica heard of and not forgotten."""
        return set(self._last)

    def state(self, replica: int, now: float) -> str:
        """Return `joining`, `active`, `draining` (said so, or silent: readings may wait) or `gone`."""
        if replica not in self._last:
            return GONE
        if replica not in self.live(now):
            return DRAINING
        return JOINING if now - self._first.get(replica, now) < JOINING_SECONDS else ACTIVE

    def forget(self, replica: int) -> None:
        """Forget a replica whose queue is gone (deleted once empty)."""
        self._last.pop(replica, None)
        self._first.pop(replica, None)
        self.lag_seconds.pop(replica, None)
