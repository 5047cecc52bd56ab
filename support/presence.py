"""Whether any administrator is online, from the notifiers' presence reports.

Each notifier instance reports its connected administrators when that set
changes and every 15 s; an instance silent for 45 s counts as gone. A report
counts from when it was made, not when it was read: reports that waited in the
queue (from a notifier since stopped, say) must not bring its admins back.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import sqlalchemy as sa

from common.messages import InvalidMessage, presence_report_of
from support.chat import Rejected
from support.extensions import db
from support.models import PresenceInstance, utcnow

SILENT_AFTER = timedelta(seconds=45)


def parse_presence(value: dict) -> tuple[str, list[int], datetime | None]:
    """Return (instance, admin ids, when reported, naive UTC) of a decoded report, or raise Rejected."""
    try:
        report = presence_report_of(value)
    except InvalidMessage as error:
        raise Rejected(str(error)) from error
    return report.instance, list(report.admin_ids), report.at


def record_presence(instance: str, admin_ids: list[int], reported_at: datetime | None = None) -> None:
    """Store what one notifier instance reported, as of when it reported it.

    Our own clock caps the report's time, so a notifier whose clock runs ahead
    cannot keep its administrators online longer.
    """
    row = db.session.get(PresenceInstance, instance, with_for_update=True)
    if row is None:
        row = PresenceInstance(instance=instance)
        db.session.add(row)
    now = utcnow()
    seen_at = min(reported_at, now) if reported_at is not None else now
    if row.seen_at is not None and seen_at < row.seen_at:
        return  # an older report than the one already stored
    row.admin_ids_json = json.dumps(admin_ids)
    row.seen_at = seen_at


def online_admin_ids() -> set[int]:
    """Return the administrators connected to a notifier heard from recently."""
    rows = db.session.scalars(sa.select(PresenceInstance).where(
        PresenceInstance.seen_at >= utcnow() - SILENT_AFTER))
    return {admin_id for row in rows for admin_id in row.admin_ids}


def admins_online() -> bool:
    """Tell whether at least one administrator is online."""
    return bool(online_admin_ids())
