"""What several benchmarks measure with: percentiles, the open-files limit, a quiet heap."""

from __future__ import annotations

import gc
import resource


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
