"""The Support stats page's figures: episodes opened and resolved per day, response times, ratings.

An episode is a conversation from its first message to its "Resolve" (a row of
`resolutions`) or, while still open, from the first message after the last
resolution. `load_episodes` reads them; `summarize` and the chart layouts are
plain functions of them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

# The monitor's charts are drawn the same way: geometry here, SVG in the template.
from common.charts import Tick, nice_ceiling
from support.extensions import db
from support.models import Conversation, Message, Resolution

DAYS = 14
CHART_WIDTH, CHART_HEIGHT = 720, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 12, 26, 34  # the unit sits above the axis
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class Episode:
    """One episode of a conversation, as the stats need it (naive UTC times)."""

    opened_at: datetime
    resolved_at: datetime | None = None
    first_response_at: datetime | None = None
    bot_only: bool = False
    rating: int | None = None


@dataclass(frozen=True)
class Summary:
    """The page's figures over a window of days (the days in the viewer's zone)."""

    days: list[date]
    opened: list[int]
    resolved: list[int]
    first_response_minutes: list[float]  # per day of resolution; 0 where none
    resolution_minutes: list[float]
    median_first_response_minutes: float | None
    median_resolution_minutes: float | None
    resolved_total: int
    bot_only_share: float | None  # of the episodes resolved in the window
    ratings: list[int]  # how many of 1, 2, 3, 4, 5 stars
    average_rating: float | None


def _local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.replace(tzinfo=UTC).astimezone(zone).date()


def _minutes(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() / 60)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def window(today: date, days: int = DAYS) -> list[date]:
    """Return the `days` days ending with `today`, oldest first."""
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def summarize(episodes: list[Episode], days: list[date], zone: ZoneInfo) -> Summary:
    """Return the figures of `episodes` over `days` (dates in `zone`)."""
    index = {day: position for position, day in enumerate(days)}
    opened, resolved = [0] * len(days), [0] * len(days)
    first_by_day: list[list[float]] = [[] for _ in days]
    resolution_by_day: list[list[float]] = [[] for _ in days]
    ratings = [0] * 5
    for episode in episodes:
        if (position := index.get(_local_day(episode.opened_at, zone))) is not None:
            opened[position] += 1
    resolved_in_window = [(index[day], episode) for episode in episodes if episode.resolved_at is not None
                          and (day := _local_day(episode.resolved_at, zone)) in index]
    for position, episode in resolved_in_window:
        resolved[position] += 1
        resolution_by_day[position].append(_minutes(episode.opened_at, episode.resolved_at))
        if episode.first_response_at is not None:
            first_by_day[position].append(_minutes(episode.opened_at, episode.first_response_at))
        if episode.rating is not None:
            ratings[episode.rating - 1] += 1
    rated, total = sum(ratings), len(resolved_in_window)
    return Summary(
        days=days, opened=opened, resolved=resolved,
        first_response_minutes=[_median(values) or 0.0 for values in first_by_day],
        resolution_minutes=[_median(values) or 0.0 for values in resolution_by_day],
        median_first_response_minutes=_median([m for values in first_by_day for m in values]),
        median_resolution_minutes=_median([m for values in resolution_by_day for m in values]),
        resolved_total=total,
        bot_only_share=sum(episode.bot_only for _, episode in resolved_in_window) / total if total else None,
        ratings=ratings,
        average_rating=sum(star * count for star, count in enumerate(ratings, 1)) / rated if rated else None,
    )


def load_episodes(since: datetime) -> list[Episode]:
    """Return the episodes resolved or opened since `since` (naive UTC), the open ones included."""
    resolved = db.session.execute(sa.select(
        Resolution.opened_at, Resolution.resolved_at, Resolution.first_response_at, Resolution.bot_only,
        Resolution.rating).where(Resolution.resolved_at >= since))  # those opened since are resolved since
    episodes = [Episode(*row) for row in resolved]
    # An open episode starts at the conversation's first message after its last resolution.
    last_resolved = (sa.select(Resolution.conversation_id, sa.func.max(Resolution.resolved_at).label("at"))
                     .group_by(Resolution.conversation_id).subquery())
    open_episodes = (sa.select(sa.func.min(Message.created_at))
                     .join(Conversation, Conversation.id == Message.conversation_id)
                     .outerjoin(last_resolved, last_resolved.c.conversation_id == Conversation.id)
                     .where(Conversation.state != "resolved", Conversation.last_message_at >= since,
                            Message.created_at > sa.func.coalesce(last_resolved.c.at, EPOCH))
                     .group_by(Conversation.id))
    episodes += [Episode(opened_at) for (opened_at,) in db.session.execute(open_episodes)
                 if opened_at >= since]
    return episodes


@dataclass(frozen=True)
class ChartBar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class ChartLabel:
    x: float
    text: str


@dataclass(frozen=True)
class GroupedBarChart:
    width: int
    height: int
    bars: list[ChartBar]
    labels: list[ChartLabel]
    ticks: list[Tick]
    baseline_y: float
    left: float
    right: float


def axis_maximum(largest: float, counts: bool) -> float:
    """Return the y-axis maximum: round, and for counts a multiple of 4 so that every tick is whole."""
    if counts:
        return max(4, math.ceil(largest / 4) * 4)
    return nice_ceiling(largest * 1.05)


def grouped_bar_chart(labels: list[str], series: list[tuple[str, list[float]]], unit: str,
                      counts: bool = False, width: int = CHART_WIDTH,
                      height: int = CHART_HEIGHT) -> GroupedBarChart:
    """Lay out one group of bars per label, a bar per series, and five y-axis ticks."""
    top_value = axis_maximum(max([value for _, values in series for value in values] + [0.0]), counts)
    plot_width = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = height - MARGIN_TOP - MARGIN_BOTTOM
    baseline = MARGIN_TOP + plot_height
    slot = plot_width / max(len(labels), 1)
    bar_width = slot * 0.76 / max(len(series), 1)
    bars = []
    for group, label in enumerate(labels):
        for number, (name, values) in enumerate(series):
            bar_height = values[group] / top_value * plot_height
            bars.append(ChartBar(x=round(MARGIN_LEFT + group * slot + slot * 0.12 + number * bar_width, 2),
                                 y=round(baseline - bar_height, 2), width=round(bar_width, 2),
                                 height=round(bar_height, 2), series=number,
                                 title=f"{label}: {values[group]:g} {unit} {name}"))
    label_every = max(1, -(-len(labels) // 14))
    chart_labels = [ChartLabel(round(MARGIN_LEFT + group * slot + slot / 2, 2), label)
                    for group, label in enumerate(labels) if group % label_every == 0]
    ticks = [Tick(round(baseline - plot_height * n / 4, 2), f"{top_value * n / 4:g}") for n in range(5)]
    return GroupedBarChart(width, height, bars, chart_labels, ticks, baseline, MARGIN_LEFT,
                           width - MARGIN_RIGHT)


def charts(summary: Summary) -> dict[str, GroupedBarChart]:
    """Return the page's charts of `summary`."""
    days = [day.strftime("%d %b") for day in summary.days]
    return {
        "volume": grouped_bar_chart(days, [("opened", summary.opened), ("resolved", summary.resolved)],
                                    "conversations", counts=True),
        "times": grouped_bar_chart(days, [("to the first answer", summary.first_response_minutes),
                                          ("to resolve", summary.resolution_minutes)], "min"),
        "ratings": grouped_bar_chart([f"{star} ★" for star in range(1, 6)], [("ratings", summary.ratings)],
                                     "ratings", counts=True, width=360),
    }
