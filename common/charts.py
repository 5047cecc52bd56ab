"""Chart geometry shared by the services that draw server-rendered SVG charts
(the monitor's consumption charts, support's stats page)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tick:
    """A y-axis line: its pixel height and its label."""
    y: float
    label: str


def nice_ceiling(value: float) -> float:
    """Return a round axis maximum at or above `value` (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power
