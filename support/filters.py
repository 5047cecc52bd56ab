"""Template filters: times in the viewer's zone, waiting durations."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, has_request_context

from common.pages import viewer_timezone
from support.models import utcnow


def local_time(moment: datetime | None, pattern: str = "%H:%M") -> str:
    """Format a stored UTC time in the viewer's time zone (UTC where no viewer asks: the consumer)."""
    if moment is None:
        return ""
    zone = viewer_timezone() if has_request_context() else UTC
    return moment.replace(tzinfo=UTC).astimezone(zone).strftime(pattern)


def waited(since: datetime | None) -> str:
    """Return how long ago `since` was, briefly ("4 min", "2 h 5 min")."""
    if since is None:
        return ""
    minutes = max(0, int((utcnow() - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def init_filters(app: Flask) -> None:
    """Register the support filters on `app`."""
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(waited, "waited")
