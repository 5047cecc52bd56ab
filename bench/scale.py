"""Benchmark scale-out: end-to-end readings/s with 1..4 monitor replicas, each held to a CPU quota.

    sudo .venv/bin/python bench/scale.py [--quota-us 5000] [--per-replica 3000] [--svg docs/scale.svg]

On this machine (2 cores) the broker, the balancer and MariaDB outrun one
replica only if replicas are held back, so each replica runs in a cgroup
(v1, `/sys/fs/cgroup/cpu/ems-bench-scale-<n>`) with `cpu.cfs_quota_us` of
`--quota-us` per 100 ms period: 5,000 is a twentieth of a core. At a quarter
of a core one replica already outran what this shared machine's broker and
database gave the rest of the pipeline; at a tenth four replicas came near
that ceiling, so E(4) measured the broker, not the replicas. Replicas are
moved into their group once they consume, so start-up is not throttled.
That is the case the design is for: replicas are the bottleneck, and adding
one should add its share. For each strategy and N = 1..4 it starts the real
balancer and N replicas, publishes `--per-replica` × N readings and measures
from the first publish to the last reading committed, then prints T(N) and the
scaling efficiency E(N) = T(N) / (N × T(1)), and draws T against N as an SVG.
Runs in a RabbitMQ virtual host and databases of its own; needs root for the
cgroups (without them it still runs, unthrottled, and says so).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.ingest import PipelineRun  # noqa: E402
from common.settings import load_settings  # noqa: E402
from migrations.runner import upgrade  # noqa: E402
from monitor.storage import create_monitor_engine  # noqa: E402
from tests.isolation import isolated  # noqa: E402
from tests.processes import ServiceProcess  # noqa: E402

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_PREFIX = "ems-bench-scale-"
PERIOD_US = 100_000
GOAL_EFFICIENCY = 0.8


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quota-us", type=int, default=5_000, help="CPU per replica per 100 ms period")
    parser.add_argument("--per-replica", type=int, default=3000, help="readings per run, times N")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--strategies", nargs="*", default=["round-robin", "hash", "least-loaded"])
    parser.add_argument("--svg", type=Path, default=ROOT / "docs" / "scale.svg")
    return parser.parse_args()


class CpuQuota:
    """One cgroup v1 cpu group per replica, holding its processes to a share of a core."""

    def __init__(self, quota_us: int):
        self.quota_us = quota_us
        self.available = os.geteuid() == 0 and (CGROUP_CPU / "cpu.cfs_quota_us").exists()
        self.groups: list[Path] = []

    def hold(self, name: str, pid: int) -> None:
        """Move process `pid` (all its threads) into a group of its own with the quota."""
        if not self.available:
            return
        group = CGROUP_CPU / f"{CGROUP_PREFIX}{name}"
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        (group / "cgroup.procs").write_text(str(pid))
        if group not in self.groups:
            self.groups.append(group)

    def release(self) -> None:
        """Remove the groups (their processes have ended or go back to the root group)."""
        for group in self.groups:
            for pid in (group / "cgroup.procs").read_text().split():
                try:
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
                except OSError:
                    pass  # ended meanwhile
            for _ in range(50):  # a process that just ended leaves its group a moment later
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self.groups = []


class ScaleRun(PipelineRun):
    """One run whose replicas are each held to a CPU quota, so that replicas are the bottleneck."""

    name = "scale"

    def __init__(self, settings, engine, quota: CpuQuota, strategy: str, replicas: int):
        super().__init__(settings, engine, strategy, replicas)
        self.quota = quota

    def started(self, workers: list[ServiceProcess]) -> None:
        """Put each replica under its quota."""
        for n, worker in enumerate(workers, start=1):
            self.quota.hold(str(n), worker.process.pid)

    def stopped(self) -> None:
        self.quota.release()


def efficiency(rates: dict[int, float], replicas: int) -> float:
    """Return E(N) = T(N) / (N × T(1))."""
    return rates[replicas] / (replicas * rates[1])


def svg_plot(results: dict[str, dict[int, float]], quota_us: int) -> str:
    """Return a small SVG line chart of readings/s against replicas, one line per strategy."""
    width, height, left, bottom, top, right = 480, 300, 60, 40, 30, 120
    most = max(max(rates.values()) for rates in results.values())
    best = max(results, key=lambda name: results[name][max(results[name])])
    ideal = {n: n * results[best][1] for n in results[best]}
    # A round axis: the next multiple of 1,000 readings/s above everything drawn.
    top_value = math.ceil(max(most, max(ideal.values())) / 1000) * 1000
    replicas = sorted(next(iter(results.values())))

    def x(n: int) -> float:
        return left + (n - 1) / max(1, replicas[-1] - 1) * (width - left - right)

    def y(value: float) -> float:
        return height - bottom - value / top_value * (height - bottom - top)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="16" font-size="12">readings/s end to end, each replica held to '
             f'{quota_us / PERIOD_US:.2f} of a core</text>',
             f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="#333"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{top}" stroke="#333"/>']
    for n in replicas:
        parts.append(f'<text x="{x(n)}" y="{y(0) + 16}" text-anchor="middle">{n}</text>')
    middle = (left + width - right) / 2
    parts.append(f'<text x="{middle}" y="{height - 6}" text-anchor="middle">replicas</text>')
    for step in range(top_value // 1000 + 1):
        value = step * 1000
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4}" text-anchor="end">{value:,.0f}</text>')
    lines = [(f"ideal ({best})", ideal, "#999", ' stroke-dasharray="4 3"')]
    lines += [(name, rates, colours[index % len(colours)], "")
              for index, (name, rates) in enumerate(results.items())]
    for index, (name, rates, colour, dash) in enumerate(lines):
        points = " ".join(f"{x(n):.1f},{y(rate):.1f}" for n, rate in sorted(rates.items()))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}"/>')
        label_y = top + 14 * index
        parts.append(f'<line x1="{width - right + 10}" y1="{label_y}" x2="{width - right + 26}" '
                     f'y2="{label_y}" stroke="{colour}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{width - right + 30}" y="{label_y + 4}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    """Run the benchmark, print the table, write the plot."""
    arguments = parse_arguments()
    quota = CpuQuota(arguments.quota_us)
    if quota.available:
        print(f"each replica held to cpu.cfs_quota_us={arguments.quota_us} per {PERIOD_US} us (cgroup v1)")
    else:
        print("no cgroup v1 cpu controller or not root: replicas run unthrottled", file=sys.stderr)
    counts = range(1, arguments.max_replicas + 1)
    results: dict[str, dict[int, float]] = {}
    with isolated(f"bench-scale-{secrets.token_hex(3)}", {"EMS_ENV": "test"}) as variables:
        os.environ.update(variables)
        settings = load_settings()
        upgrade(settings, ("monitor",))
        engine = create_monitor_engine(settings)
        print(f"{arguments.per_replica:,} readings per replica, {arguments.devices} devices "
              "(first publish -> last reading committed)")
        print(f"{'strategy':<14}" + "".join(f"{f'T({n})':>10}" for n in counts)
              + "".join(f"{f'E({n})':>8}" for n in counts[1:]))
        for strategy in arguments.strategies:
            rates = {}
            for replicas in counts:
                run = ScaleRun(settings, engine, quota, strategy, replicas)
                rates[replicas] = run.measure(arguments.per_replica * replicas, arguments.devices)
            results[strategy] = rates
            print(f"{strategy:<14}" + "".join(f"{rates[n]:>8,.0f}/s" for n in counts)
                  + "".join(f"{efficiency(rates, n):>8.2f}" for n in counts[1:]), flush=True)
        engine.dispose()
    last = counts[-1]
    best = max(results, key=lambda name: efficiency(results[name], last))
    print(f"best E({last}): {best} {efficiency(results[best], last):.2f} (goal >= {GOAL_EFFICIENCY})")
    if "round-robin" in results:
        print(f"round-robin E({last}): {efficiency(results['round-robin'], last):.2f}")
    arguments.svg.parent.mkdir(parents=True, exist_ok=True)
    arguments.svg.write_text(svg_plot(results, arguments.quota_us))
    print(f"plot: {arguments.svg.relative_to(ROOT) if arguments.svg.is_relative_to(ROOT) else arguments.svg}")


if __name__ == "__main__":
    main()
