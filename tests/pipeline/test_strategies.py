"""Balancing strategies: unit tests of the routing rules alone."""

import os
import subprocess
import sys
import uuid
from collections import Counter

import pytest

from balancer.strategies import LeastLoaded, Rendezvous, RoundRobin, StableHash, create_strategy
from common.membership import ACTIVE, DRAINING, Heartbeat, Membership

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


def moved_fraction(before, after) -> float:
    """Return the share of DEVICES whose replica differs between two strategies."""
    return sum(before.choose(device) != after.choose(device) for device in DEVICES) / len(DEVICES)


@pytest.mark.parametrize(("before", "after"), [
    ({1, 2, 3, 4}, {1, 3, 4}),   # replica 2 left from the middle
    ({1, 2, 3}, {1, 2, 3, 7}),   # a replica joined with a number above the others
    ({1, 2, 3, 4, 5}, {1, 2}),   # scaled down by three
])
def test_rendezvous_over_live_sets_moves_only_the_changed_share(before, after):
    changed = len(before ^ after) / len(before | after)
    moved = moved_fraction(Rendezvous(before), Rendezvous(after))
    assert changed * 0.8 <= moved <= changed * 1.2


def test_rendezvous_moves_only_the_devices_of_a_replica_that_left():
    old, new = Rendezvous({1, 2, 3, 4}), Rendezvous({1, 3, 4})
    for device in DEVICES:
        if old.choose(device) != 2:
            assert new.choose(device) == old.choose(device)


def test_set_replicas_changes_the_set_in_place():
    for name in ("round-robin", "hash", "consistent", "least-loaded"):
        strategy = create_strategy(name, 3)
        strategy.set_replicas([2, 5])
        assert {strategy.choose(device) for device in DEVICES[:300]} == {2, 5}, name


def test_hash_mod_n_moves_most_devices_when_one_replica_leaves():
    # Why the consistent strategy is the one to scale with: hash mod N reshuffles.
    assert moved_fraction(StableHash({1, 2, 3, 4}), StableHash({1, 3, 4})) > 0.5


def test_least_loaded_gives_a_joining_replica_the_next_readings():
    strategy = LeastLoaded(2)
    strategy.observe_depths({1: 50, 2: 50})
    strategy.set_replicas([1, 2, 3])
    assert [strategy.choose("device") for _ in range(5)] == [3] * 5


def test_membership_routes_to_replicas_heard_recently():
    membership = Membership(live_seconds=3)
    membership.heard(Heartbeat(1, ACTIVE), now=100)
    membership.heard(Heartbeat(2, ACTIVE), now=101)
    assert membership.live(now=102) == (1, 2)
    assert membership.live(now=103.5) == (2,), "replica 1 silent for more than 3 s"
    assert membership.state(1, now=103.5) == DRAINING, "silent, its queue may still hold readings"


def test_a_draining_replica_leaves_the_live_set_at_once():
    membership = Membership()
    membership.heard(Heartbeat(1, ACTIVE), now=0)
    membership.heard(Heartbeat(1, DRAINING), now=1)
    assert membership.live(now=1) == ()
    membership.forget(1)
    assert membership.state(1, now=1) == "gone"


@pytest.mark.parametrize("body", [b"{}", b"[]", b"not json", b'{"replica": 0, "state": "active"}',
                                  b'{"replica": 2, "state": "sleeping"}',
                                  b'{"replica": true, "state": "active"}'])
def test_a_message_that_is_not_a_heartbeat_is_refused(body):
    with pytest.raises(ValueError):
        Heartbeat.from_json(body)


def test_a_heartbeat_round_trips():
    assert Heartbeat.from_json(Heartbeat(4, DRAINING, "host-1").to_json()) == Heartbeat(4, DRAINING, "host-1")
