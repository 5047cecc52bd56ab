"""Generate `simulator/data/sensor.csv`: 30 days of one household, one kWh value per 10 minutes.

Run `python -m simulator.generate_sample` to regenerate it (seeded: the same
file every time). Each line is the energy of one 10-minute interval; the file
starts at local midnight of a winter Monday.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from simulator.household import INTERVAL_MINUTES, interval_kwh

SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "sensor.csv"
SAMPLE_DAYS = 30
SAMPLE_START = datetime(2025, 1, 6)
SEED = 20250106


def sample_values(days: int = SAMPLE_DAYS, seed: int = SEED) -> list[float]:
    """Return the sample's kWh values, one per 10 minutes."""
    rng = random.Random(seed)
    steps = days * 24 * 60 // INTERVAL_MINUTES
    return [interval_kwh(SAMPLE_START + timedelta(minutes=INTERVAL_MINUTES * (step + 1)), rng)
            for step in range(steps)]


def main() -> None:
    """Write the sample file."""
    SAMPLE_PATH.parent.mkdir(parents=True, exist_ok=True)
    SAMPLE_PATH.write_text("".join(f"{value:.3f}\n" for value in sample_values()))
    print(f"wrote {SAMPLE_PATH}")


if __name__ == "__main__":
    main()
