"""Message schemas that cross service boundaries, with strict parsing.

Parsing raises `InvalidMessage` with a human-readable reason; consumers
dead-letter the message with that reason instead of dropping it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

MAX_MESSAGE_BYTES = 4096
# Ten minutes of a very large three-phase connection stays well below this.
MAX_READING_KWH = 100.0
# Readings before this are certainly a clock error (2000-01-01T00:00:00Z).
EARLIEST_READING_MS = 946_684_800_000
# Clocks drift; a reading more than a day ahead of the receiver is refused.
MAX_READING_FUTURE_MS = 24 * 3600 * 1000

USER_EVENT_TYPES = ("user.created", "user.updated", "user.deleted")
DEVICE_EVENT_TYPES = ("device.created", "device.updated", "device.deleted")


class InvalidMessage(ValueError):
    """A message that does not follow its schema; the text is the reason."""


def load_json_object(body: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Decode a message body that must be one JSON object of at most `max_bytes`."""
    if len(body) > max_bytes:
        raise InvalidMessage(f"body of {len(body)} bytes exceeds {max_bytes}")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidMessage(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise InvalidMessage("not a JSON object")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Reading:
    """One meter reading: kWh consumed in the ten minutes before `timestamp`."""

    timestamp: int  # epoch milliseconds, UTC
    device_id: str
    measurement_value: float

    @property
    def at(self) -> datetime:
        """Return the reading's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)

    def to_json(self) -> bytes:
        """Encode the reading in the seed format."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()


def parse_uuid(value) -> str:
    """Return `value` as a canonical lowercase UUID string, or raise InvalidMessage."""
    import uuid

    if not isinstance(value, str):
        raise InvalidMessage("device_id must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError as error:
        raise InvalidMessage(f"device_id {value[:60]!r} is not a UUID") from error


def parse_reading(body: bytes, now_ms: int | None = None) -> Reading:
    """Parse and validate a reading message in the seed format."""
    value = load_json_object(body)
    expected = {"timestamp", "device_id", "measurement_value"}
    missing = expected - value.keys()
    if missing:
        raise InvalidMessage(f"missing field(s): {', '.join(sorted(missing))}")
    extra = value.keys() - expected
    if extra:
        raise InvalidMessage(f"unexpected field(s): {', '.join(sorted(extra))}")

    timestamp = value["timestamp"]
    if not _is_number(timestamp) or not math.isfinite(timestamp) or timestamp != int(timestamp):
        raise InvalidMessage("timestamp must be an integer of epoch milliseconds")
    timestamp = int(timestamp)
    if now_ms is None:
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
    if timestamp < EARLIEST_READING_MS or timestamp > now_ms + MAX_READING_FUTURE_MS:
        raise InvalidMessage(f"timestamp {timestamp} is out of range")

    measurement = value["measurement_value"]
    if not _is_number(measurement):
        raise InvalidMessage("measurement_value must be a number")
    measurement = float(measurement)
    if not math.isfinite(measurement):
        raise InvalidMessage("measurement_value must be finite")
    if measurement < 0:
        raise InvalidMessage("measurement_value must not be negative")
    if measurement > MAX_READING_KWH:
        raise InvalidMessage(f"measurement_value {measurement} kWh is absurd (max {MAX_READING_KWH})")

    return Reading(timestamp=timestamp, device_id=parse_uuid(value["device_id"]),
                   measurement_value=measurement)


@dataclass(frozen=True)
class DeviceState:
    """A device as other services see it (the payload of device events)."""

    id: str
    name: str
    owner_id: int | None
    max_hourly_kwh: float


@dataclass(frozen=True)
class UserState:
    """A user as other services see it (the payload of user events)."""

    id: int
    name: str
    role: str


@dataclass(frozen=True)
class Event:
    """A change published by the portal to `ems.events` (routing key = `type`)."""

    sequence: int  # the outbox id: strictly increasing in publish order
    type: str
    occurred_at: str  # ISO 8601, UTC
    device: DeviceState | None = None
    user: UserState | None = None

    def to_json(self) -> bytes:
        """Encode the event."""
        payload = {"sequence": self.sequence, "type": self.type, "occurred_at": self.occurred_at}
        if self.device is not None:
            payload["device"] = asdict(self.device)
        if self.user is not None:
            payload["user"] = asdict(self.user)
        return json.dumps(payload, separators=(",", ":")).encode()


def parse_event(body: bytes) -> Event:
    """Parse and validate a user or device event."""
    value = load_json_object(body)
    event_type = value.get("type")
    sequence = value.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise InvalidMessage("sequence must be an integer")
    occurred_at = value.get("occurred_at")
    if not isinstance(occurred_at, str):
        raise InvalidMessage("occurred_at must be an ISO 8601 string")
    if event_type in DEVICE_EVENT_TYPES:
        device = value.get("device")
        if not isinstance(device, dict):
            raise InvalidMessage("device event without a device")
        owner_id = device.get("owner_id")
        limit = device.get("max_hourly_kwh")
        if owner_id is not None and (not isinstance(owner_id, int) or isinstance(owner_id, bool)):
            raise InvalidMessage("device.owner_id must be an integer or null")
        if not _is_number(limit) or not math.isfinite(limit) or limit <= 0:
            raise InvalidMessage("device.max_hourly_kwh must be a positive number")
        name = device.get("name")
        if not isinstance(name, str):
            raise InvalidMessage("device.name must be a string")
        state = DeviceState(id=parse_uuid(device.get("id")), name=name, owner_id=owner_id,
                            max_hourly_kwh=float(limit))
        return Event(sequence, event_type, occurred_at, device=state)
    if event_type in USER_EVENT_TYPES:
        user = value.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise InvalidMessage("user event without a user id")
        state = UserState(id=user["id"], name=str(user.get("name", "")), role=str(user.get("role", "")))
        return Event(sequence, event_type, occurred_at, user=state)
    raise InvalidMessage(f"unknown event type {event_type!r}")


@dataclass(frozen=True)
class Alert:
    """An over-consumption alert: a device passed its limit in one clock hour."""

    alert_id: int
    user_id: int
    device_id: str
    device_name: str
    hour_start: str  # ISO 8601, UTC, on the hour
    kwh: float
    limit_kwh: float

    def to_json(self) -> bytes:
        """Encode the alert."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()


def parse_alert(body: bytes) -> Alert:
    """Parse an alert message."""
    value = load_json_object(body)
    try:
        return Alert(
            alert_id=int(value["alert_id"]),
            user_id=int(value["user_id"]),
            device_id=parse_uuid(value["device_id"]),
            device_name=str(value["device_name"]),
            hour_start=str(value["hour_start"]),
            kwh=float(value["kwh"]),
            limit_kwh=float(value["limit_kwh"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidMessage(f"malformed alert: {error}") from error
