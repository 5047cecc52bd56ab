"""The viewer's alerts and early warnings: listing (newest first, paginated), unread count, read state.

Warnings (kind `warning`, monitor.warnings) share the inbox, the unread count and
the read state with alerts; a device's latest alert is an alert, never a warning.

A client sees the alerts of their own devices; an administrator sees every
alert. Read state belongs to the alert's owner: only they mark it read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from common.auth import Identity
from common.messages import ALERT, WARNING

PAGE_SIZE = 20
ALERT_COLUMNS = ("id, device_id, device_name, owner_id, hour_start, kwh, limit_kwh, created_at, read_at, "
                 "kind, due_at")


@dataclass(frozen=True)
class AlertRow:
    id: int
    device_id: str
    device_name: str
    owner_id: int
    hour_start: datetime  # naive UTC
    kwh: object
    limit_kwh: object
    created_at: datetime
    read_at: datetime | None
    kind: str = ALERT
    due_at: datetime | None = None  # a warning's projected crossing, naive UTC

    @property
    def unread(self) -> bool:
        return self.read_at is None

    @property
    def is_warning(self) -> bool:
        return self.kind == WARNING


@dataclass(frozen=True)
class AlertPage:
    items: list[AlertRow]
    page: int
    pages: int
    total: int


def _scope(viewer: Identity, device_id: str | None) -> tuple[str, dict]:
    clauses, parameters = [], {}
    if not viewer.is_admin:
        clauses.append("owner_id = :owner")
        parameters["owner"] = viewer.user_id
    if device_id:
        clauses.append("device_id = :device_id")
        parameters["device_id"] = device_id
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", parameters


def list_alerts(connection: Connection, viewer: Identity, page: int = 1,
                device_id: str | None = None, page_size: int = PAGE_SIZE) -> AlertPage:
    """Return one page of the alerts the viewer may see, newest first."""
    where, parameters = _scope(viewer, device_id)
    total = connection.execute(text(f"SELECT COUNT(*) FROM alerts{where}"), parameters).scalar()  # noqa: S608
    pages = max(1, math.ceil(total / page_size))
    page = min(max(page, 1), pages)
    rows = connection.execute(
        text(f"SELECT {ALERT_COLUMNS} FROM alerts{where} ORDER BY id DESC LIMIT :limit OFFSET :offset"),  # noqa: S608
        {**parameters, "limit": page_size, "offset": (page - 1) * page_size})
    return AlertPage([AlertRow(*row) for row in rows], page, pages, total)


def latest_alert(connection: Connection, viewer: Identity, device_id: str) -> AlertRow | None:
    """Return a device's newest alert (no warning) the viewer may see (a client: raised while theirs)."""
    where, parameters = _scope(viewer, device_id)
    where += (" AND" if where else " WHERE") + " kind = 'alert'"
    row = connection.execute(text(
        # By hour on the (device_id, hour_start) key: ORDER BY id walks the primary key over
        # every device's alerts (the whole table for a device without any).
        f"SELECT {ALERT_COLUMNS} FROM alerts{where} "  # noqa: S608
        "ORDER BY hour_start DESC, id DESC LIMIT 1"), parameters).first()
    return AlertRow(*row) if row else None


def unread_count(connection: Connection, viewer: Identity) -> int:
    """Return how many of the viewer's own alerts are unread."""
    return connection.execute(text(
        "SELECT COUNT(*) FROM alerts WHERE owner_id = :owner AND read_at IS NULL"),
        {"owner": viewer.user_id}).scalar()


def find_alert(connection: Connection, alert_id: int) -> AlertRow | None:
    """Return an alert by id."""
    row = connection.execute(text(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = :id"),  # noqa: S608
                             {"id": alert_id}).first()
    return AlertRow(*row) if row else None


def mark_read(connection: Connection, alert_id: int) -> None:
    """Mark one alert read (keeps the first read time)."""
    connection.execute(text(
        "UPDATE alerts SET read_at = COALESCE(read_at, UTC_TIMESTAMP(3)) WHERE id = :id"), {"id": alert_id})


def mark_all_read(connection: Connection, viewer: Identity) -> int:
    """Mark every unread alert of the viewer read; return how many."""
    return connection.execute(text(
        "UPDATE alerts SET read_at = UTC_TIMESTAMP(3) WHERE owner_id = :owner AND read_at IS NULL"),
        {"owner": viewer.user_id}).rowcount
