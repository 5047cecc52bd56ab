"""Message schemas that cross service boundaries, with strict parsing.

Parsing raises `InvalidMessage` with a human-readable reason for ANY input, however
hostile (invalid UTF-8, absurd numbers, deep nesting, lone surrogates); consumers
dead-letter the message with that reason instead of dropping it. Any other
exception would crash a consumer's callback and bring the message back for ever.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.auth import Identity

MAX_MESSAGE_BYTES = 4096
# No message of ours nests deeper than a few levels; this bounds any recursive use of one.
MAX_JSON_DEPTH = 32
# Ten minutes of a very large three-phase connection stays well below this.
MAX_READING_KWH = 100.0
# Readings before this are certainly a clock error (2000-01-01T00:00:00Z).
EARLIEST_READING_MS = 946_684_800_000
# Clocks drift, but a meter stamping readings minutes ahead is wrong, not early;
# processes with settings pass `max_clock_skew_seconds` instead.
MAX_READING_FUTURE_MS = 5 * 60 * 1000
# The portal's bounds of a device's limit (web/validation.py).
MIN_DEVICE_LIMIT_KWH = 0.001
MAX_DEVICE_LIMIT_KWH = 100_000.0
# kWh columns are DECIMAL(14,6): an alert's figures stay below this.
MAX_STORED_KWH = 100_000_000.0
# User ids are MySQL INT columns; sequences, alert, conversation and message ids BIGINT.
MAX_USER_ID = 2**31 - 1
MAX_ROW_ID = 2**63 - 1
# A user's token version is a MySQL INT column too.
MAX_TOKEN_VERSION = 2**31 - 1
# How much of a reason goes into a dead letter's header or a log line.
MAX_REASON_CHARS = 500

USER_EVENT_TYPES = ("user.created", "user.updated", "user.deleted")
DEVICE_EVENT_TYPES = ("device.created", "device.updated", "device.deleted")

_UUID_TEXT = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.ASCII | re.I)


def printable_reason(text, limit: int = MAX_REASON_CHARS) -> str:
    """Return `text` safe for an AMQP header and a one-line log: escaped, at most `limit` characters."""
    text = str(text)
    # Lone surrogates cannot be encoded, control characters and line separators would
    # break the line: they become their escapes. One more character than fits is
    # enough to know whether to cut.
    escaped = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                      for char in text[:limit + 1])
    return escaped if len(escaped) <= limit else escaped[:limit - 1] + "…"


class InvalidMessage(ValueError):
    """A message that does not follow its schema; the text is the reason, always printable."""

    def __init__(self, reason):
        super().__init__(printable_reason(reason))


def has_lone_surrogate(text: str) -> bool:
    """Tell whether `text` holds a lone surrogate, which no UTF-8 encoder (MySQL, JSON, AMQP) accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def exceeds_depth(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """Tell whether lists and objects in `value` nest deeper than `limit` levels (the top one is 1)."""
    pending = [(value, 1)] if isinstance(value, (dict, list, tuple)) else []
    while pending:  # a loop, not recursion: the depth is what is in question
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False


def load_json_object(body: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Decode a message body that must be one JSON object of at most `max_bytes`."""
    if not isinstance(body, (bytes, bytearray, str)):
        raise InvalidMessage(f"body must be bytes, not {type(body).__name__}")
    if len(body) > max_bytes:
        raise InvalidMessage(f"body of {len(body)} bytes exceeds {max_bytes}")
    try:
        value = json.loads(body)
    except RecursionError as error:
        raise InvalidMessage(f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from error
    except ValueError as error:  # invalid UTF-8 or JSON, or an integer of over 4,300 digits
        raise InvalidMessage(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise InvalidMessage("not a JSON object")
    # Only a body with many brackets can nest deeply: readings skip the walk.
    brackets = ("[", "{") if isinstance(body, str) else (b"[", b"{")
    if sum(body.count(bracket) for bracket in brackets) > MAX_JSON_DEPTH and exceeds_depth(value):
        raise InvalidMessage(f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _brief(number) -> str:
    """Return a number short enough for a reason (an integer may have thousands of digits)."""
    if isinstance(number, int) and number.bit_length() > 64:
        return f"an integer of about {int(number.bit_length() * math.log10(2))} digits"
    return str(number)


def _integer(value, field: str, minimum: int, maximum: int) -> int:
    """Return `value` if it is an integer (not a bool) within [minimum, maximum], or raise InvalidMessage."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidMessage(f"{field} must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidMessage(f"{field} {_brief(value)} is out of range ({minimum}..{maximum})")
    return value


def _number(value, field: str, minimum: float, maximum: float) -> float:
    """Return `value` as a finite float within [minimum, maximum], or raise InvalidMessage."""
    if not _is_number(value):
        raise InvalidMessage(f"{field} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMessage(f"{field} must be finite")
    # int and float compare exactly, so a huge integer is refused before float() could overflow.
    if not minimum <= value <= maximum:
        raise InvalidMessage(f"{field} {_brief(value)} is out of range ({minimum}..{maximum})")
    return float(value) + 0.0  # + 0.0 turns -0.0 into 0.0


def _text(value, field: str, max_chars: int | None = None) -> str:
    """Return `value` if it is a string that can be stored and re-encoded, or raise InvalidMessage."""
    if not isinstance(value, str):
        raise InvalidMessage(f"{field} must be a string")
    if has_lone_surrogate(value):
        raise InvalidMessage(f"{field} holds a lone surrogate, which is not text")
    if max_chars is not None and len(value) > max_chars:
        raise InvalidMessage(f"{field} has {len(value)} characters, the limit is {max_chars}")
    return value


def _iso_time(value, field: str) -> str:
    """Return `value` if it is an ISO 8601 time string, or raise InvalidMessage."""
    text = _text(value, field, 64)
    try:
        datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidMessage(f"{field} must be an ISO 8601 time") from error
    return text


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


def parse_uuid(value, field: str = "device_id") -> str:
    """Return `value` as a canonical lowercase UUID string, or raise InvalidMessage."""
    if not isinstance(value, str):
        raise InvalidMessage(f"{field} must be a UUID string")
    # uuid.UUID alone also takes braces, "urn:uuid:", underscores and non-ASCII digits.
    if not _UUID_TEXT.fullmatch(value):
        raise InvalidMessage(f"{field} {value[:60]!r} is not a UUID")
    return str(uuid.UUID(value))


def now_epoch_ms() -> int:
    """Return this process's clock as epoch milliseconds."""
    return int(datetime.now(UTC).timestamp() * 1000)


def parse_reading(body: bytes, now_ms: int | None = None,
                  max_future_ms: int = MAX_READING_FUTURE_MS) -> Reading:
    """Parse and validate a reading message in the seed format.

    A reading stamped more than `max_future_ms` after `now_ms` (this process's
    clock by default) is refused with a reason starting `future-timestamp:`.
    """
    value = load_json_object(body)
    expected = {"timestamp", "device_id", "measurement_value"}
    missing = expected - value.keys()
    if missing:
        raise InvalidMessage(f"missing field(s): {', '.join(sorted(missing))}")
    extra = value.keys() - expected
    if extra:
        raise InvalidMessage(f"unexpected field(s): {', '.join(repr(name[:40]) for name in sorted(extra))}")

    timestamp = value["timestamp"]
    if isinstance(timestamp, float) and math.isfinite(timestamp) and timestamp.is_integer():
        timestamp = int(timestamp)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise InvalidMessage("timestamp must be an integer of epoch milliseconds")
    if timestamp < EARLIEST_READING_MS:
        raise InvalidMessage(f"timestamp {_brief(timestamp)} is out of range (before 2000)")
    if now_ms is None:
        now_ms = now_epoch_ms()
    if timestamp > now_ms + max_future_ms:
        raise InvalidMessage(f"future-timestamp: {_brief(timestamp)} is more than {max_future_ms} ms "
                             f"ahead of this clock ({now_ms})")

    measurement = value["measurement_value"]
    if not _is_number(measurement):
        raise InvalidMessage("measurement_value must be a number")
    if isinstance(measurement, float) and not math.isfinite(measurement):
        raise InvalidMessage("measurement_value must be finite")
    if measurement < 0:
        raise InvalidMessage("measurement_value must not be negative")
    if measurement > MAX_READING_KWH:
        raise InvalidMessage(f"measurement_value {_brief(measurement)} kWh is absurd (max {MAX_READING_KWH})")

    return Reading(timestamp=timestamp, device_id=parse_uuid(value["device_id"]),
                   measurement_value=float(measurement) + 0.0)


# --- chat: what browsers send through the notifier to support (`ems.chat`) ---

# The browser's fields of one chat event, JSON-encoded in UTF-8: a message of support's
# 2,000 characters fits even in four-byte characters, and the whole message stays below
# what support accepts.
CHAT_PAYLOAD_MAX_BYTES = 10 * 1024
CHAT_MESSAGE_MAX_BYTES = 16_384
SENDER_NAME_MAX_CHARS = 120
PRESENCE_INSTANCE_MAX_CHARS = 120


def _compact_utf8_json(value, what: str) -> bytes:
    """Encode `value` as compact UTF-8 JSON, or raise InvalidMessage saying why not."""
    try:
        # allow_nan=False: NaN and Infinity are not JSON, whatever Python's decoder accepts.
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except UnicodeEncodeError as error:
        raise InvalidMessage(f"{what} holds a lone surrogate, which is not text") from error
    except (TypeError, ValueError) as error:  # keys or values JSON has no form for, huge integers
        raise InvalidMessage(f"{what} is not plain JSON: {error}"[:200]) from error


def parse_utc_time(value, field: str) -> datetime:
    """Return an ISO 8601 time as naive UTC (as stored), or raise InvalidMessage."""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    # Not a string, not ISO 8601, or an offset that pushes it past year 1 or 9999.
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidMessage(f"{field} must be an ISO-8601 time") from error
    return moment


def _iso_utc(moment: datetime, timespec: str = "auto") -> str:
    """Return a naive UTC time as ISO 8601 with its zone."""
    return moment.replace(tzinfo=UTC).isoformat(timespec=timespec)


@dataclass(frozen=True)
class ChatMessage:
    """A browser's chat event on `ems.chat`: the sender the notifier verified and the browser's fields.

    The routing key says what it is (a message, typing, a read receipt); support
    checks the payload's fields for that kind.
    """

    sender: Identity
    payload: dict
    received_at: datetime  # naive UTC: when the notifier received it

    def to_json(self) -> bytes:
        """Encode the message, or raise InvalidMessage when the payload is not a small JSON object."""
        if not isinstance(self.payload, dict):
            raise InvalidMessage("payload must be an object")
        # Checked without recursion before json.dumps recurses into it; one level less than
        # support accepts, as the message wraps the payload in one more object.
        if exceeds_depth(self.payload, MAX_JSON_DEPTH - 1):
            raise InvalidMessage(f"payload nests deeper than {MAX_JSON_DEPTH - 1} levels")
        encoded = _compact_utf8_json(self.payload, "payload")
        if len(encoded) > CHAT_PAYLOAD_MAX_BYTES:
            raise InvalidMessage(f"payload of {len(encoded)} bytes exceeds {CHAT_PAYLOAD_MAX_BYTES}")
        sender = {"id": self.sender.user_id, "role": self.sender.role, "name": self.sender.name}
        return _compact_utf8_json({"sender": sender, "payload": self.payload,
                                   "received_at": _iso_utc(self.received_at, "milliseconds")}, "message")


def parse_chat_message(body: bytes) -> ChatMessage:
    """Parse `{"sender": {...}, "payload": {...}, "received_at": ISO}` or raise InvalidMessage."""
    from common.auth import ROLES, Identity  # common.auth imports this module

    value = load_json_object(body, CHAT_MESSAGE_MAX_BYTES)
    sender, payload = value.get("sender"), value.get("payload")
    if not isinstance(sender, dict) or not isinstance(payload, dict):
        raise InvalidMessage("sender and payload must be objects")
    user_id, role = sender.get("id"), sender.get("role")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 1 <= user_id <= MAX_USER_ID:
        raise InvalidMessage("sender.id must be a positive integer")
    if role not in ROLES:
        raise InvalidMessage("sender.role must be admin or client")
    name = sender.get("name")
    name = name[:SENDER_NAME_MAX_CHARS] if isinstance(name, str) else ""
    if has_lone_surrogate(name):  # it is stored with every message, and MySQL refuses it
        raise InvalidMessage("sender.name holds a lone surrogate, which is not text")
    received_at = parse_utc_time(value.get("received_at"), "received_at")
    return ChatMessage(Identity(user_id, role, name), payload, received_at)


@dataclass(frozen=True)
class PresenceReport:
    """Which administrators one notifier instance serves, as of when it said so (`inbound.presence`)."""

    instance: str
    admin_ids: tuple[int, ...]  # distinct, in order
    at: datetime | None = None  # naive UTC; reports from before the field existed carry none

    def to_json(self) -> bytes:
        """Encode the report."""
        report = {"instance": self.instance, "admin_ids": sorted(set(self.admin_ids))}
        if self.at is not None:
            report["at"] = _iso_utc(self.at)
        return json.dumps(report, separators=(",", ":")).encode()


def presence_report_of(value: dict) -> PresenceReport:
    """Return the presence report a decoded JSON object holds, or raise InvalidMessage."""
    instance, admin_ids = value.get("instance"), value.get("admin_ids")
    if not isinstance(instance, str) or not 1 <= len(instance) <= PRESENCE_INSTANCE_MAX_CHARS \
            or has_lone_surrogate(instance):
        raise InvalidMessage(f"instance must be a string of 1-{PRESENCE_INSTANCE_MAX_CHARS} characters")
    if not isinstance(admin_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_USER_ID for i in admin_ids):
        raise InvalidMessage("admin_ids must be a list of user ids")
    at = parse_utc_time(value["at"], "at") if value.get("at") is not None else None
    return PresenceReport(instance, tuple(sorted(set(admin_ids))), at)


def parse_presence_report(body: bytes) -> PresenceReport:
    """Parse a notifier's presence report or raise InvalidMessage."""
    return presence_report_of(load_json_object(body))


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
    # Tokens of this user carrying an older version are refused (common.auth). Events
    # published before the field existed carry none: that means 0, as for new users.
    token_version: int = 0


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
    sequence = _integer(value.get("sequence"), "sequence", 1, MAX_ROW_ID)
    occurred_at = _iso_time(value.get("occurred_at"), "occurred_at")
    if event_type in DEVICE_EVENT_TYPES:
        device = value.get("device")
        if not isinstance(device, dict):
            raise InvalidMessage("device event without a device")
        owner_id = device.get("owner_id")
        if owner_id is not None:
            owner_id = _integer(owner_id, "device.owner_id", 1, MAX_USER_ID)
        limit = _number(device.get("max_hourly_kwh"), "device.max_hourly_kwh",
                        MIN_DEVICE_LIMIT_KWH, MAX_DEVICE_LIMIT_KWH)
        state = DeviceState(id=parse_uuid(device.get("id"), "device.id"),
                            name=_text(device.get("name"), "device.name"),
                            owner_id=owner_id, max_hourly_kwh=limit)
        return Event(sequence, event_type, occurred_at, device=state)
    if event_type in USER_EVENT_TYPES:
        user = value.get("user")
        if not isinstance(user, dict) or "id" not in user:
            raise InvalidMessage("user event without a user id")
        state = UserState(id=_integer(user["id"], "user.id", 1, MAX_USER_ID),
                          name=_text(user.get("name", ""), "user.name"),
                          role=_text(user.get("role", ""), "user.role"),
                          token_version=_integer(user.get("token_version", 0), "user.token_version",
                                                 0, MAX_TOKEN_VERSION))
        return Event(sequence, event_type, occurred_at, user=state)
    raise InvalidMessage(f"unknown event type {event_type!r:.80}")


ALERT = "alert"
WARNING = "warning"
ALERT_KINDS = (ALERT, WARNING)


@dataclass(frozen=True)
class Alert:
    """An over-consumption alert (a device passed its limit in one clock hour) or an early warning.

    A warning (`kind` "warning") says the running hour is projected to pass the
    limit at `due_at` (ISO 8601, UTC); `kwh` is the total so far. Messages from
    before warnings existed carry no kind: they are alerts.
    """

    alert_id: int
    user_id: int
    device_id: str
    device_name: str
    hour_start: str  # ISO 8601, UTC, on the hour
    kwh: float
    limit_kwh: float
    kind: str = ALERT
    due_at: str | None = None

    def to_json(self) -> bytes:
        """Encode the alert (an alert's message leaves out the warning's empty `due_at`)."""
        payload = asdict(self)
        if self.due_at is None:
            del payload["due_at"]
        return json.dumps(payload, separators=(",", ":")).encode()


def parse_alert(body: bytes) -> Alert:
    """Parse an alert or warning message."""
    value = load_json_object(body)
    required = {field.name for field in fields(Alert) if field.name not in ("kind", "due_at")}
    missing = required - value.keys()
    if missing:
        raise InvalidMessage(f"malformed alert: missing field(s): {', '.join(sorted(missing))}")
    kind = value.get("kind", ALERT)
    if kind not in ALERT_KINDS:
        raise InvalidMessage(f"kind must be one of {', '.join(ALERT_KINDS)}")
    due_at = value.get("due_at")
    if kind == WARNING:
        due_at = _iso_time(due_at, "due_at")
    elif due_at is not None:
        raise InvalidMessage("only a warning has a due_at")
    return Alert(
        alert_id=_integer(value["alert_id"], "alert_id", 1, MAX_ROW_ID),
        user_id=_integer(value["user_id"], "user_id", 1, MAX_USER_ID),
        device_id=parse_uuid(value["device_id"]),
        device_name=_text(value["device_name"], "device_name"),
        hour_start=_iso_time(value["hour_start"], "hour_start"),
        kwh=_number(value["kwh"], "kwh", 0.0, MAX_STORED_KWH),
        limit_kwh=_number(value["limit_kwh"], "limit_kwh", 0.0, MAX_STORED_KWH),
        kind=kind,
        due_at=due_at,
    )
