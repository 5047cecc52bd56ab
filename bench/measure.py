"""What several benchmarks measure with: percentiles, the open-files limit, a quiet heap, memory."""

from __future__ import annotations

import gc
import resource
import threading
import time
from pathlib import Path


def percentile(values: list[float], fraction: float) -> float:
    """Return the value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def raise_open_files_limit() -> int:
    """Let this process open as many sockets as the hard limit allows; return that limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def freeze_simulated_clients() -> None:
    """Keep the objects of this process's simulated clients out of its full collections.

    Hundreds or thousands of clients make a large heap: a full collection in the
    benchmark would stall every client at once and be counted as the system's latency.
    """
    gc.collect()
    gc.freeze()


def rss_kib(pid: int) -> int:
    """Return the resident memory of process `pid` in KiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # a zombie has no memory left


def process_tree_rss_kib(pid: int) -> int:
    """Return the resident memory of process `pid` and all its descendants, in KiB.

    A gunicorn master is small; its workers hold the memory that matters.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += rss_kib(current)
        pending += children.get(current, [])
    return total


def publish_until_stored(settings, bodies, stored, timeout: float) -> float:
    """Publish readings in the background until `stored()` counts them all; return readings/s.

    The clock runs from the first publish to the last reading stored: the pipeline's
    end-to-end throughput, publishing included.
    """
    bodies = list(bodies)
    from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
    from simulator.publisher import ConfirmedBurstPublisher

    publisher = threading.Thread(target=ConfirmedBurstPublisher(
        settings, READINGS_EXCHANGE, READING_ROUTING_KEY).publish_all, args=(bodies,))
    started = time.monotonic()
    publisher.start()
    while stored() < len(bodies):
        if time.monotonic() > started + timeout:
            raise TimeoutError(f"only {stored()} of {len(bodies)} readings stored")
        time.sleep(0.02)
    seconds = time.monotonic() - started
    publisher.join()
    return len(bodies) / seconds
