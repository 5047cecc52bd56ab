"""Devices: search, create, edit, delete and assignment, each change with its outbox event."""

from __future__ import annotations

import logging

from sqlalchemy import or_, select

from common.logs import log_event
from web.accounts import PAGE_SIZE, RuleViolation
from web.extensions import db
from web.models import ROLE_CLIENT, Device, User
from web.outbox import record_event
from web.validation import ConflictingInput, ValidationError, parse_owner_id, validate_device

logger = logging.getLogger(__name__)


def search_devices(query: str = "", page: int = 1, per_page: int = PAGE_SIZE, owner_id: int | None = None):
    """Return one page of devices whose name or address contains `query`, by name.

    With `owner_id`, only that user's devices.
    """
    statement = select(Device).order_by(Device.name, Device.id)
    if owner_id is not None:
        statement = statement.where(Device.owner_id == owner_id)
    query = (query or "").strip()
    if query:
        statement = statement.where(or_(Device.name.contains(query, autoescape=True),
                                        Device.address.contains(query, autoescape=True)))
    return db.paginate(statement, page=page, per_page=per_page, error_out=False)


def devices_of(user_id: int) -> list[Device]:
    """Return every device assigned to `user_id`, by name."""
    return list(db.session.scalars(select(Device).where(Device.owner_id == user_id).order_by(Device.name)))


def _owner(owner_id: int | None) -> User | None:
    if owner_id is None:
        return None
    # Locking the owner keeps a concurrent deletion of that user from slipping in between.
    owner = db.session.scalar(select(User).where(User.id == owner_id).with_for_update())
    if owner is None:
        raise ConflictingInput({"user_id": f"there is no user {owner_id}"})
    if owner.role != ROLE_CLIENT:
        raise ConflictingInput({"user_id": "devices can only be assigned to clients"})
    return owner


def create_device(data) -> Device:
    """Create a device from raw input (optionally with `owner_id`) and record `device.created`."""
    fields = validate_device(data)
    owner_id = parse_owner_id(data.get("owner_id"))
    _owner(owner_id)
    device = Device(**fields, owner_id=owner_id)
    db.session.add(device)
    db.session.flush()
    record_event("device.created", device=device)
    db.session.commit()
    log_event(logger, "device.created", device_id=device.id, owner_id=owner_id)
    return device


def update_device(device: Device, data) -> Device:
    """Apply an edit of any device fields and record `device.updated`; raise ValidationError."""
    fields = validate_device(data, partial=True)
    if not fields:
        raise ValidationError({"device": "nothing to change"})
    db.session.refresh(device, with_for_update=True)
    before = (device.name, device.description, device.address, device.max_hourly_kwh)
    for name, value in fields.items():
        setattr(device, name, value)
    if (device.name, device.description, device.address, device.max_hourly_kwh) != before:
        record_event("device.updated", device=device)
    db.session.commit()
    log_event(logger, "device.updated", device_id=device.id, fields=",".join(sorted(fields)))
    return device


def assign_device(device: Device, owner_value) -> Device:
    """Assign the device to a client (or to nobody for an empty value) and record `device.updated`."""
    owner_id = parse_owner_id(owner_value)
    db.session.refresh(device, with_for_update=True)
    _owner(owner_id)
    if device.owner_id != owner_id:
        device.owner_id = owner_id
        record_event("device.updated", device=device)
    db.session.commit()
    log_event(logger, "device.assigned", device_id=device.id, owner_id=owner_id)
    return device


def delete_device(device: Device) -> None:
    """Delete the device and record `device.deleted` (carrying its last state)."""
    db.session.refresh(device, with_for_update=True)
    record_event("device.deleted", device=device)
    device_id = device.id
    db.session.delete(device)
    db.session.commit()
    log_event(logger, "device.deleted", device_id=device_id)


__all__ = ["RuleViolation", "assign_device", "create_device", "delete_device", "devices_of",
           "search_devices", "update_device"]
