"""Geometry of the server-rendered SVG charts (the templates only draw it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

WIDTH, HEIGHT = 720, 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 12, 16, 34


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: Decimal
    over_limit: bool
    show_label: bool


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    limit_y: float | None
    baseline_y: float
    left: float
    right: float


def nice_ceiling(value: float) -> float:
    """Return a round axis maximum at or above `value` (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def bar_chart(labels: list[str], values: list[Decimal], limit: Decimal | None = None,
              width: int = WIDTH, height: int = HEIGHT) -> BarChart:
    """Lay out bars for `values`, a horizontal limit line, and four y-axis ticks."""
    top_value = nice_ceiling(max([float(v) for v in values] + [float(limit or 0), 0.0]) * 1.05)
    plot_width = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = height - MARGIN_TOP - MARGIN_BOTTOM
    baseline = MARGIN_TOP + plot_height
    slot = plot_width / max(len(values), 1)
    label_every = max(1, math.ceil(len(values) / 12))

    def y_of(value: float) -> float:
        return baseline - value / top_value * plot_height

    bars = []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = y_of(float(value))
        bars.append(Bar(x=round(MARGIN_LEFT + index * slot + slot * 0.12, 2), y=round(y, 2),
                        width=round(slot * 0.76, 2), height=round(baseline - y, 2), label=label,
                        value=value, over_limit=limit is not None and value > limit,
                        show_label=index % label_every == 0))
    ticks = [Tick(round(y_of(top_value * n / 4), 2), f"{top_value * n / 4:g}") for n in range(5)]
    limit_y = round(y_of(float(limit)), 2) if limit is not None else None
    return BarChart(width, height, bars, ticks, limit_y, baseline, MARGIN_LEFT, width - MARGIN_RIGHT)


def sparkline(values: list[Decimal], width: int = 120, height: int = 32) -> str:
    """Return the `points` of an SVG polyline tracing `values` across a small box."""
    if not values:
        return ""
    top = max(float(max(values)), 1e-9)
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{index * step:.1f},{height - 2 - float(value) / top * (height - 4):.1f}"
                    for index, value in enumerate(values))
