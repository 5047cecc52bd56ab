"""The transactional outbox: events are rows written with the change they describe.

`record_event` must run inside the same database transaction as the change, so
the event exists if and only if the change was committed. The relay
(`web.relay`) publishes the rows later, in id order, with publisher confirms.

Sequence: the row id is the event's `sequence`. Every change locks its user or
device row before inserting its outbox row, so for one entity the ids follow
commit order; consumers keep the highest sequence seen per entity and ignore
anything older or equal (which also removes the duplicates that at-least-once
delivery may bring).
"""

from __future__ import annotations

import json
from datetime import UTC

from common.messages import DeviceState, Event, UserState
from web.extensions import db
from web.models import Device, OutboxEvent, User, utcnow


def device_state(device: Device) -> DeviceState:
    """Return the device as other services see it."""
    return DeviceState(id=device.id, name=device.name, owner_id=device.owner_id,
                       max_hourly_kwh=float(device.max_hourly_kwh))


def user_state(user: User) -> UserState:
    """Return the user as other services see it (never the e-mail or password)."""
    return UserState(id=user.id, name=user.name, role=user.role, token_version=user.token_version or 0)


def record_event(event_type: str, *, device: Device | None = None, user: User | None = None) -> OutboxEvent:
    """Write the event of a change into the outbox, in the caller's transaction."""
    now = utcnow()
    row = OutboxEvent(routing_key=event_type, body={}, created_at=now)
    db.session.add(row)
    db.session.flush()  # the id is the sequence, known only after the insert
    event = Event(
        sequence=row.id,
        type=event_type,
        occurred_at=now.replace(tzinfo=UTC).isoformat(timespec="milliseconds"),
        device=device_state(device) if device is not None else None,
        user=user_state(user) if user is not None else None,
    )
    row.body = json.loads(event.to_json())
    return row
