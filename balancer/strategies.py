"""Balancing strategies: each picks the monitor replica (1..N) for a reading's device.

Plain classes without I/O, so that each rule has unit tests of its own. The
balancer feeds `LeastLoaded` with queue depths it reads by passive declares.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping

STRATEGY_NAMES = ("round-robin", "hash", "consistent", "least-loaded")


def stable_hash(text: str) -> int:
    """Return a 64-bit hash of `text` that is the same in every process and run.

    Python's hash() of a str is salted per process, so it cannot say which
    replica a device belongs to across restarts or balancer instances.
    """
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class RoundRobin:
    """Send each reading to the next replica in turn."""

    name = "round-robin"

    def __init__(self, replicas: int):
        self.replicas = replicas
        self._next = itertools.cycle(range(1, replicas + 1))

    def choose(self, device_id: str) -> int:
        """Return the next replica, whatever the device."""
        return next(self._next)


class StableHash:
    """Send every reading of a device to the same replica: stable hash mod N."""

    name = "hash"

    def __init__(self, replicas: int):
        self.replicas = replicas

    def choose(self, device_id: str) -> int:
        """Return the device's replica."""
        return stable_hash(device_id) % self.replicas + 1


class Rendezvous:
    """Highest-random-weight (rendezvous) hashing: a device goes to the replica
    with the highest hash of (replica, device).

    Adding or removing a replica moves only the devices whose winner changes,
    about 1/N of them, unlike hash mod N which reshuffles almost all.
    """

    name = "consistent"

    def __init__(self, replicas: int):
        self.replicas = replicas

    def choose(self, device_id: str) -> int:
        """Return the replica with the highest weight for the device."""
        return max(range(1, self.replicas + 1),
                   key=lambda replica: stable_hash(f"{replica}:{device_id}"))


class LeastLoaded:
    """Send each reading to the replica whose ingest queue is shortest.

    Depths come from the broker now and then (`observe_depths`); between two
    observations the readings routed since are added, so that a burst does not
    all land on the queue that was shortest at the last look.
    """

    name = "least-loaded"

    def __init__(self, replicas: int):
        self.replicas = replicas
        self._estimate = {replica: 0 for replica in range(1, replicas + 1)}
        self._rotation = itertools.cycle(range(1, replicas + 1))

    def observe_depths(self, depths: Mapping[int, int]) -> None:
        """Take fresh queue depths (replica -> ready messages) from the broker."""
        for replica, depth in depths.items():
            if replica in self._estimate:
                self._estimate[replica] = depth

    def choose(self, device_id: str) -> int:
        """Return the replica with the smallest estimated queue (ties rotate)."""
        start = next(self._rotation)
        order = [(start + offset - 1) % self.replicas + 1 for offset in range(self.replicas)]
        replica = min(order, key=lambda candidate: self._estimate[candidate])
        self._estimate[replica] += 1
        return replica


def create_strategy(name: str, replicas: int):
    """Return the strategy called `name` for `replicas` replicas."""
    classes = {cls.name: cls for cls in (RoundRobin, StableHash, Rendezvous, LeastLoaded)}
    if name not in classes:
        raise ValueError(f"unknown balancing strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}")
    if replicas < 1:
        raise ValueError("at least one replica is needed")
    return classes[name](replicas)
