"""Balancing strategies: unit tests of the routing rules alone."""

import os
import subprocess
import sys
import uuid
from collections import Counter

import pytest

from balancer.strategies import LeastLoaded, Rendezvous, RoundRobin, StableHash, create_strategy

DEVICES = [str(uuid.UUID(int=n * 7919 + 12345)) for n in range(2000)]


def test_round_robin_spreads_readings_evenly():
    strategy = RoundRobin(3)
    counts = Counter(strategy.choose(DEVICES[0]) for _ in range(3000))
    assert counts == {1: 1000, 2: 1000, 3: 1000}


def test_round_robin_takes_replicas_in_turn():
    strategy = RoundRobin(3)
    assert [strategy.choose("any") for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]


def test_hash_keeps_a_device_on_one_replica():
    strategy = StableHash(3)
    for device in DEVICES[:100]:
        assert len({strategy.choose(device) for _ in range(20)}) == 1


def test_hash_is_stable_across_processes():
    # Python's hash() of a str is salted per process; a balancer restart must not move devices.
    script = "from balancer.strategies import StableHash; print(StableHash(3).choose('%s'))"
    answers = {
        subprocess.run([sys.executable, "-c", script % device], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for device, seed in [(DEVICES[1], "1"), (DEVICES[1], "2")]
    }
    assert answers == {str(StableHash(3).choose(DEVICES[1]))}


def test_hash_uses_every_replica_roughly_equally():
    counts = Counter(StableHash(3).choose(device) for device in DEVICES)
    assert set(counts) == {1, 2, 3}
    assert min(counts.values()) > len(DEVICES) / 3 * 0.85


@pytest.mark.parametrize(("before", "after"), [(3, 4), (4, 3), (5, 6), (3, 2)])
def test_consistent_hashing_moves_about_one_nth_of_devices(before, after):
    old, new = Rendezvous(before), Rendezvous(after)
    moved = sum(old.choose(device) != new.choose(device) for device in DEVICES)
    # Ideal: 1/max(N) of the keys move; allow sampling noise.
    assert moved / len(DEVICES) <= 1 / max(before, after) * 1.2


def test_consistent_hashing_moves_only_to_or_from_the_changed_replica():
    old, new = Rendezvous(3), Rendezvous(4)
    for device in DEVICES:
        if old.choose(device) != new.choose(device):
            assert new.choose(device) == 4


def test_hash_mod_n_would_move_most_devices():
    # The reason for the consistent strategy: plain hash mod N reshuffles.
    moved = sum(StableHash(3).choose(d) != StableHash(4).choose(d) for d in DEVICES)
    assert moved / len(DEVICES) > 0.5


def test_least_loaded_picks_the_shortest_queue():
    strategy = LeastLoaded(3)
    strategy.observe_depths({1: 40, 2: 5, 3: 12})
    assert strategy.choose("device") == 2


def test_least_loaded_counts_what_it_routed_since_the_last_look():
    strategy = LeastLoaded(3)
    strategy.observe_depths({1: 10, 2: 0, 3: 10})
    chosen = [strategy.choose("device") for _ in range(10)]
    assert chosen == [2] * 10
    # Now queue 2 is estimated at 10 like the others: the load spreads again.
    assert {strategy.choose("device") for _ in range(3)} == {1, 2, 3}


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown balancing strategy"):
        create_strategy("random", 3)


@pytest.mark.parametrize("name", ["round-robin", "hash", "consistent", "least-loaded"])
def test_every_strategy_answers_a_replica_in_range(name):
    strategy = create_strategy(name, 3)
    assert {strategy.choose(device) for device in DEVICES[:300]} <= {1, 2, 3}
