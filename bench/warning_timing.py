"""When does the demo's surge warn, and how long before its alert?

    .venv/bin/python bench/warning_timing.py [--days 20]

Replays, without any process or database, what the live demo sends for Alice's
Kitchen circuit (0.5 kWh an hour): the simulator's household values every 5 s,
and twice the limit's pace from minute 20 of every even hour (simulator.modes).
For each surging hour of `--days` days it applies the replica's rule
(monitor.warnings.projected_crossing, default EMS_WARNING_MIN_* settings) after
each reading, as the replica does, and prints when the warning would come, the
crossing it would announce, and when the alert comes. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.storage import over_limit, reading_kwh  # noqa: E402
from monitor.warnings import RECENT_MS, WarningRule, projected_crossing  # noqa: E402
from simulator.household import interval_kwh  # noqa: E402
from simulator.modes import DEMO_INTERVAL_SECONDS, LIVE_KWH_PLACES, demo_surge, device_scale  # noqa: E402

KITCHEN = {"id": "alice-kitchen", "max_hourly_kwh": "0.5"}
STEP = timedelta(seconds=DEMO_INTERVAL_SECONDS)


def surge_hour(start: datetime, rng: random.Random) -> tuple[float | None, float | None, float | None]:
    """Return the minute of the warning, the minute it announces and the minute of the alert."""
    limit, total, readings = Decimal(KITCHEN["max_hourly_kwh"]), Decimal(0), 0
    warned = announced = None
    last_ten_minutes: deque[tuple[datetime, Decimal]] = deque()
    moment = start + STEP
    while moment < start + timedelta(hours=1):
        if demo_surge(moment):  # as simulator.modes.live computes the surge
            value = round(2 * float(limit) * DEMO_INTERVAL_SECONDS / 3600, 6)
        else:
            value = interval_kwh(moment, rng, device_scale(KITCHEN), seconds=DEMO_INTERVAL_SECONDS,
                                 places=LIVE_KWH_PLACES)
        total, readings = total + reading_kwh(value), readings + 1
        last_ten_minutes.append((moment, reading_kwh(value)))
        while last_ten_minutes[0][0] <= moment - timedelta(milliseconds=RECENT_MS):
            last_ten_minutes.popleft()
        minute = (moment - start).total_seconds() / 60
        if over_limit(total, limit):
            return warned, announced, minute
        if warned is None:
            latest_ms = int(moment.timestamp() * 1000)
            crossing = projected_crossing(total, limit, start.replace(tzinfo=None), latest_ms, readings,
                                          WarningRule(), sum(kwh for _, kwh in last_ten_minutes))
            if crossing is not None:
                warned, announced = minute, (crossing - start.replace(tzinfo=None)).total_seconds() / 60
        moment += STEP
    return warned, announced, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    arguments = parser.parse_args()
    rows = []
    for day in range(arguments.days):
        for hour in range(0, 24, 2):
            start = datetime(2026, 11, 2, hour, tzinfo=UTC) + timedelta(days=day)
            rows.append(surge_hour(start, random.Random(f"{day}-{hour}")))
    warned = [row for row in rows if row[0] is not None and row[2] is not None]
    print(f"{len(rows)} surging hours, {len(warned)} warned before their alert, "
          f"{sum(1 for row in rows if row[2] is None)} without an alert")
    for name, values in (("warning at minute", [row[0] for row in warned]),
                         ("announced crossing at minute", [row[1] for row in warned]),
                         ("alert at minute", [row[2] for row in warned]),
                         ("warning ahead of the alert, minutes", [row[2] - row[0] for row in warned])):
        median = statistics.median(values)
        print(f"{name:38} min {min(values):5.1f}  median {median:5.1f}  max {max(values):5.1f}")


if __name__ == "__main__":
    main()
