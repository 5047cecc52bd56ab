"""Whether any administrator is online, from the notifiers' presence reports.

Each notifier instance reports its connected administrators when that set
changes and every 15 s; an instance silent for 45 s counts as gone.
"""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from support.chat import Rejected
from support.extensions import db
from support.models import PresenceInstance, utcnow

SILENT_AFTER = timedelta(seconds=45)


def parse_presence(value: dict) -> tuple[str, list[int]]:
    """Return (instance, admin ids) of a presence report, or raise Rejected."""
    instance, admin_ids = value.get("instance"), value.get("admin_ids")
    if not isinstance(instance, str) or not 1 <= len(instance) <= 120:
        raise Rejected("instance must be a string of 1-120 characters")
    if not isinstance(admin_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in admin_ids):
        raise Rejected("admin_ids must be a list of integers")
    return instance, sorted(set(admin_ids))


def record_presence(instance: str, admin_ids: list[int]) -> None:
    """Store what one notifier instance reported, stamped with our own clock."""
    row = db.session.get(PresenceInstance, instance, with_for_update=True)
    if row is None:
        row = PresenceInstance(instance=instance)
        db.session.add(row)
    row.admin_ids_json = json.dumps(admin_ids)
    row.seen_at = utcnow()


def online_admin_ids() -> set[int]:
    """Return the administrators connected to a notifier heard from recently."""
    rows = db.session.scalars(sa.select(PresenceInstance).where(
        PresenceInstance.seen_at >= utcnow() - SILENT_AFTER))
    return {admin_id for row in rows for admin_id in row.admin_ids}


def admins_online() -> bool:
    """Tell whether at least one administrator is online."""
    return bool(online_admin_ids())
