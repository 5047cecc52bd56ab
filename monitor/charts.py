"""Geometry of the server-rendered SVG charts (the templates only draw it).

A bar chart is two SVGs side by side: the y-axis, a fixed 48 px wide, and the plot,
as wide as the card. Heights are pixels and horizontal positions percentages of
the plot's width, and nothing is scaled by a viewBox: text keeps its 11 px on a
390-pixel phone as on a desktop. Which x-axis labels fit depends on the width, so
each bar says whether its label shows on a phone, on a wide screen, or both; the
stylesheet picks by a media query (monitor.css).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from common.charts import Tick, nice_ceiling

HEIGHT = 280
MARGIN_TOP, MARGIN_BOTTOM = 16, 40  # two rows of x-axis labels
# Plot widths the x-axis labels must fit: beside the axis on a 390-px phone, and on a
# screen wider than monitor.css's breakpoint (760 px).
PHONE_PLOT_PX, WIDE_PLOT_PX = 280, 560
# An 11 px label: about 6.5 px a character, with a gap between neighbours.
CHAR_PX, LABEL_GAP_PX = 6.5, 8


@dataclass(frozen=True)
class Bar:
    x: float  # percent of the plot's width
    y: float
    width: float  # percent of the plot's width
    height: float
    label: str  # x-axis label; a newline starts a second line ("Mon\n01")
    tooltip: str  # what hover and keyboard focus show: "14:00–15:00: 0.512 kWh"
    value: Decimal
    over_limit: bool
    on_phone: bool  # the x-axis label shows on a narrow screen
    on_wide: bool  # ... and on a wide one
    row: int = 0  # 1: the label sits a row lower, beside a twin it would overlap

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 3)

    @property
    def label_lines(self) -> list[str]:
        return self.label.split("\n")


@dataclass(frozen=True)
class BarChart:
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    limit_y: float | None
    baseline_y: float


def _label_px(label: str) -> float:
    return max(len(line) for line in label.split("\n")) * CHAR_PX


def visible_labels(labels: list[str], plot_px: float, keep: frozenset[int] = frozenset()) -> list[bool]:
    """Return which x-axis labels to show in a plot `plot_px` wide so that none overlap.

    Every n-th label shows, n as small as the widest label allows; the labels in `keep`
    (the two halves of an hour that repeats) always show, their neighbours make room.
    """
    if not labels:
        return []
    slot = plot_px / len(labels)
    ordinary = [_label_px(label) for index, label in enumerate(labels) if index not in keep] or [0.0]
    every = max(1, math.ceil((max(ordinary) + LABEL_GAP_PX) / slot))
    shown = [index % every == 0 for index in range(len(labels))]
    for kept in keep:
        reach = math.ceil(((_label_px(labels[kept]) + max(ordinary)) / 2 + LABEL_GAP_PX) / slot)
        for index in range(max(0, kept - reach + 1), min(len(labels), kept + reach)):
            shown[index] = index in keep
    return shown


def bar_chart(labels: list[str], values: list[Decimal], limit: Decimal | None = None, *,
              titles: list[str] | None = None, keep_labels: frozenset[int] = frozenset(),
              unit: str = "kWh", height: int = HEIGHT) -> BarChart:
    """Lay out bars for `values`, a horizontal limit line, and five y-axis ticks.

    `titles` name each bar in its tooltip (default: its label; the template adds the
    cost and "over the limit"); `keep_labels` are bars whose x-axis label always shows.
    """
    top_value = nice_ceiling(max([float(v) for v in values] + [float(limit or 0), 0.0]) * 1.05)
    plot_height = height - MARGIN_TOP - MARGIN_BOTTOM
    baseline = MARGIN_TOP + plot_height
    slot = 100 / max(len(values), 1)
    on_phone = visible_labels(labels, PHONE_PLOT_PX, keep_labels)
    on_wide = visible_labels(labels, WIDE_PLOT_PX, keep_labels)

    def y_of(value: float) -> float:
        return baseline - value / top_value * plot_height

    bars = []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = y_of(float(value))
        over = limit is not None and value > limit
        tooltip = f"{(titles or labels)[index]}: {value:.3f} {unit}"
        # Two kept labels side by side (03:00 UTC+3, 03:00 UTC+2) take two rows.
        row = 1 if index in keep_labels and index - 1 in keep_labels else 0
        bars.append(Bar(x=round(index * slot + slot * 0.12, 3), y=round(y, 2), width=round(slot * 0.76, 3),
                        height=round(baseline - y, 2), label=label, tooltip=tooltip, value=value,
                        over_limit=over, on_phone=on_phone[index], on_wide=on_wide[index], row=row))
    ticks = [Tick(round(y_of(top_value * n / 4), 2), f"{top_value * n / 4:g}") for n in range(5)]
    limit_y = round(y_of(float(limit)), 2) if limit is not None else None
    return BarChart(height, bars, ticks, limit_y, baseline)


@dataclass(frozen=True)
class Sparkline:
    """A small trend of daily totals: complete days solid, today's projection dashed."""

    points: str  # the SVG polyline of the complete days
    projection: str  # the dashed segment from yesterday to today's projected total, or ""
    projected_kwh: Decimal | None


def sparkline(days: list[Decimal], projected_today: Decimal | None = None, width: int = 120,
              height: int = 32) -> Sparkline:
    """Trace daily totals; with `projected_today`, the last day is today, drawn dashed to that projection.

    Today's partial total would plunge the line every morning: the caller projects it
    (monitor.consumption.projected_day_total) and the line shows it as a projection.
    """
    if not days:
        return Sparkline("", "", None)
    complete = days if projected_today is None else days[:-1]
    top = max(float(max(complete + [projected_today or Decimal(0)], default=0)), 1e-9)
    step = width / max(len(days) - 1, 1)

    def point(index: int, value: Decimal) -> str:
        return f"{index * step:.1f},{height - 2 - float(value) / top * (height - 4):.1f}"

    points = " ".join(point(index, value) for index, value in enumerate(complete))
    projection = ""
    if projected_today is not None and len(days) > 1:
        projection = f"{point(len(days) - 2, days[-2])} {point(len(days) - 1, projected_today)}"
    return Sparkline(points, projection, projected_today)
