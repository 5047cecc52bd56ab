"""Who may see what: the viewer's devices, request arguments, the database connection."""

from __future__ import annotations

from datetime import date, datetime

from flask import abort, current_app, request
from sqlalchemy import text
from sqlalchemy.engine import Connection

from common.auth import Identity, KnownSessions, current_identity
from common.messages import InvalidMessage, parse_uuid
from common.pages import viewer_timezone
from monitor.consumption import Device, all_devices, devices_of, find_device, today

MAX_RANGE_DAYS = 366
SELECT_USER_SESSION = text("SELECT token_version, deleted FROM user_sessions WHERE user_id = :id")


def database() -> Connection:
    """Return a new connection to the monitor database (use it in a `with`)."""
    return current_app.extensions["monitor_engine"].connect()


def known_sessions(user_id: int) -> KnownSessions | None:
    """Return what the portal's events told of a user's sessions (the lookup of the token checks)."""
    with database() as connection:
        row = connection.execute(SELECT_USER_SESSION, {"id": user_id}).first()
    return None if row is None else KnownSessions(version=row.token_version, deleted=bool(row.deleted))


def settings():
    """Return the service's settings."""
    return current_app.config["EMS_SETTINGS"]


def viewable_device(device_id: str) -> Device:
    """Return a device the viewer may see: 404 if unknown, 403 if it is someone else's."""
    try:
        device_id = parse_uuid(device_id)
    except InvalidMessage:
        abort(404, description="no such device")
    viewer = current_identity()
    with database() as connection:
        device = find_device(connection, device_id)
    if viewer.is_admin:
        if device is None:
            abort(404, description="no such device")
        return device
    # A client learns nothing about devices that are not theirs, not even existence.
    if device is None or device.deleted or device.owner_id != viewer.user_id:
        abort(403, description="this device is not yours")
    return device


def visible_since(device: Device) -> datetime | None:
    """Return from when the viewer may see a device's data (naive UTC; None: all of it).

    A client sees a device's consumption only from when it became theirs; an admin sees all.
    """
    return None if current_identity().is_admin else device.owner_since


def visible_devices(connection: Connection, viewer: Identity) -> list[Device]:
    """Return the devices on the viewer's pages: their own, or every device for an admin."""
    return all_devices(connection) if viewer.is_admin else devices_of(connection, viewer.user_id)


def day_argument(name: str = "date") -> date:
    """Return the `?date=YYYY-MM-DD` argument, today (viewer's zone) by default; 400 if malformed."""
    value = request.args.get(name)
    if not value:
        return today(viewer_timezone())
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400, description=f"{name} must be a date as YYYY-MM-DD")


def range_arguments(default_days: int) -> tuple[date, date]:
    """Return `?from=&to=` (inclusive), defaulting to the last `default_days` days; 400 if invalid."""
    end = day_argument("to")
    if request.args.get("from"):
        start = day_argument("from")
    else:
        start = date.fromordinal(end.toordinal() - default_days + 1)
    if start > end:
        abort(400, description="from must not be after to")
    if (end - start).days >= MAX_RANGE_DAYS:
        abort(400, description=f"a range may span at most {MAX_RANGE_DAYS} days")
    return start, end


def page_argument() -> int:
    """Return `?page=` as a positive integer (1 by default); 400 if malformed."""
    value = request.args.get("page", "1")
    if not value.isdigit() or int(value) < 1:
        abort(400, description="page must be a positive integer")
    return int(value)
