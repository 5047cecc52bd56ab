"""A small model of a household's electricity use, for sample data and live readings.

Power (kW) follows a daily shape — a base load, a morning and a bigger evening
peak, a night dip — scaled by season (more in winter) and by weekday, with
noise and occasional appliance spikes. Energy over an interval is power times
its length.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

INTERVAL_MINUTES = 10
INTERVAL_MS = INTERVAL_MINUTES * 60 * 1000

BASE_LOAD_KW = 0.25  # fridge, router, standby
# (hour of day, extra kW) points; the shape between them is interpolated.
DAILY_SHAPE = [(0, 0.05), (5, 0.0), (6.5, 0.5), (8, 0.9), (9.5, 0.3), (12, 0.35), (14, 0.25),
               (17, 0.6), (19, 1.5), (21, 1.1), (23, 0.3), (24, 0.05)]


def daily_extra_kw(hour: float) -> float:
    """Return the extra load above base at a (fractional) hour of the day."""
    for (h1, kw1), (h2, kw2) in zip(DAILY_SHAPE, DAILY_SHAPE[1:], strict=False):
        if h1 <= hour <= h2:
            share = (hour - h1) / (h2 - h1)
            # A cosine blend gives smooth shoulders instead of straight ramps.
            return kw1 + (kw2 - kw1) * (1 - math.cos(math.pi * share)) / 2
    return 0.0


def seasonal_factor(moment: datetime) -> float:
    """Return the seasonal scale: about 1.3 in mid-winter, 0.8 in mid-summer (northern)."""
    day = moment.timetuple().tm_yday
    return 1.05 + 0.25 * math.cos(2 * math.pi * (day - 15) / 365.25)


def power_kw(moment: datetime, rng: random.Random, scale: float = 1.0) -> float:
    """Return a noisy household power draw at `moment` (local wall-clock time)."""
    hour = moment.hour + moment.minute / 60
    weekend = 1.15 if moment.weekday() >= 5 and 9 <= hour <= 16 else 1.0
    kw = (BASE_LOAD_KW + daily_extra_kw(hour) * weekend) * seasonal_factor(moment)
    kw *= rng.lognormvariate(0, 0.18)
    if rng.random() < 0.04:  # kettle, oven, washing machine
        kw += rng.uniform(0.8, 2.5)
    return max(kw * scale, 0.02)


def interval_kwh(moment: datetime, rng: random.Random, scale: float = 1.0,
                 seconds: float = INTERVAL_MINUTES * 60, places: int = 3) -> float:
    """Return the kWh used in the `seconds` before `moment`, rounded to watt-hours by default.

    Readings a few seconds apart need finer `places`: at watt-hours, a small device
    would send nothing but zeros.
    """
    return round(power_kw(moment, rng, scale) * seconds / 3600, places)


def epoch_ms(moment: datetime) -> int:
    """Return an aware datetime as epoch milliseconds."""
    return int(moment.astimezone(UTC).timestamp() * 1000)
