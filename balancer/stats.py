"""What the balancer tells the admin Pipeline page about its routing.

The balancer has no database: its counters (readings routed per replica, readings
it dead-lettered, since it started) travel in its view of the replicas, the one
message of `pipeline.status` that the monitor API reads (monitor/pipeline_status.py).
They are the same counts as its `ems_readings_routed_total` metric, so the page
and Prometheus agree.
"""

from __future__ import annotations

import os
import socket

DEAD = 0  # the counter key of dead-lettered readings


def instance_name() -> str:
    """Return a name for this balancer process, unique among running instances."""
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


def routing_counters(counts: dict[int, int]) -> dict:
    """Return the view's counter fields for a snapshot {replica: routed} (key 0: dead-lettered)."""
    return {
        "routed": {str(replica): count for replica, count in sorted(counts.items()) if replica != DEAD},
        "dead_lettered": counts.get(DEAD, 0),
    }
