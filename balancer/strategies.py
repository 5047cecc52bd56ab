"""Balancing strategies: each picks the monitor replica for a reading's device.

A strategy routes over a set of replica numbers (at first 1..N; then the live
set the balancer learns from the replicas' heartbeats, `set_replicas`).
Plain classes without I/O, so that each rule has unit tests of its own. The
balancer feeds `LeastLoaded` with queue depths it reads by passive declares.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping

STRATEGY_NAMES = ("round-robin", "hash", "consistent", "least-loaded")


def stable_hash(text: str) -> int:
    """Return a 64-bit hash of `text` that is the same in every process and run.

    Python's hash() of a str is salted per process, so it cannot say which
    replica a device belongs to across restarts or balancer instances.
    """
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def replica_set(replicas: int | Iterable[int]) -> tuple[int, ...]:
    """Return replica numbers in order: 1..N for a count, else the given numbers."""
    members = tuple(range(1, replicas + 1)) if isinstance(replicas, int) else tuple(sorted(set(replicas)))
    if not members:
        raise ValueError("at least one replica is needed")
    return members


class Strategy:
    """What every strategy shares: the replica set it routes over."""

    name = ""

    def __init__(self, replicas: int | Iterable[int]):
        self.members = replica_set(replicas)

    @property
    def replicas(self) -> int:
        return len(self.members)

    def set_replicas(self, replicas: Iterable[int]) -> None:
        """Route over another replica set from now on (replicas joined or left)."""
        self.members = replica_set(replicas)


class RoundRobin(Strategy):
    """Send each reading to the next replica in turn."""

    name = "round-robin"

    def __init__(self, replicas: int | Iterable[int]):
        super().__init__(replicas)
        self._turn = itertools.count()

    def choose(self, device_id: str) -> int:
        """Return the next replica, whatever the device."""
        return self.members[next(self._turn) % len(self.members)]


class StableHash(Strategy):
    """Send every reading of a device to the same replica: stable hash mod N."""

    name = "hash"

    def choose(self, device_id: str) -> int:
        """Return the device's replica."""
        return self.members[stable_hash(device_id) % len(self.members)]


class Rendezvous(Strategy):
    """Highest-random-weight (rendezvous) hashing: a device goes to the replica
    with the highest hash of (replica, device).

    Adding or removing a replica moves only the devices whose winner changes,
    about 1/N of them, unlike hash mod N which reshuffles almost all.
    """

    name = "consistent"

    def choose(self, device_id: str) -> int:
        """Return the replica with the highest weight for the device."""
        return max(self.members, key=lambda replica: stable_hash(f"{replica}:{device_id}"))


class LeastLoaded(Strategy):
    """Send each reading to the replica whose ingest queue is shortest.

    Depths come from the broker now and then (`observe_depths`); between two
    observations the readings routed since are added, so that a burst does not
    all land on the queue that was shortest at the last look.
    """

    name = "least-loaded"

    def __init__(self, replicas: int | Iterable[int]):
        super().__init__(replicas)
        self._estimate = {replica: 0 for replica in self.members}
        self._turn = itertools.count()

    def set_replicas(self, replicas: Iterable[int]) -> None:
        """Route over another replica set; a new replica starts with an empty queue."""
        super().set_replicas(replicas)
        self._estimate = {replica: self._estimate.get(replica, 0) for replica in self.members}

    def observe_depths(self, depths: Mapping[int, int]) -> None:
        """Take fresh queue depths (replica -> ready messages) from the broker."""
        for replica, depth in depths.items():
            if replica in self._estimate:
                self._estimate[replica] = depth

    def choose(self, device_id: str) -> int:
        """Return the replica with the smallest estimated queue (ties rotate)."""
        start = next(self._turn)
        order = [self.members[(start + offset) % len(self.members)] for offset in range(len(self.members))]
        replica = min(order, key=lambda candidate: self._estimate[candidate])
        self._estimate[replica] += 1
        return replica


def create_strategy(name: str, replicas: int | Iterable[int]):
    """Return the strategy called `name` for `replicas` replicas."""
    classes = {cls.name: cls for cls in (RoundRobin, StableHash, Rendezvous, LeastLoaded)}
    if name not in classes:
        raise ValueError(f"unknown balancing strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}")
    return classes[name](replicas)
