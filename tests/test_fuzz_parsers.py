"""Every parser survives any input, as a hostile meter gateway or browser would send it.

The property, for each parser: it returns an object that satisfies its schema, or
it refuses with InvalidMessage (support's Rejected, the notifier's InvalidChatPayload)
whose reason is printable and non-empty. Any other exception would crash a consumer's
callback, and the broker would deliver the same message again for ever.

Deterministic: the "ems" profile of tests/conftest.py fixes the seed, and every
poison input found so far is an explicit @example.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from common.auth import ROLES, Identity
from common.messages import (
    CHAT_PAYLOAD_MAX_BYTES,
    DEVICE_EVENT_TYPES,
    EARLIEST_READING_MS,
    MAX_DEVICE_LIMIT_KWH,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_BYTES,
    MAX_READING_FUTURE_MS,
    MAX_READING_KWH,
    MAX_REASON_CHARS,
    MAX_ROW_ID,
    MAX_STORED_KWH,
    MAX_USER_ID,
    MIN_DEVICE_LIMIT_KWH,
    SENDER_NAME_MAX_CHARS,
    USER_EVENT_TYPES,
    ChatMessage,
    InvalidMessage,
    load_json_object,
    parse_alert,
    parse_chat_message,
    parse_event,
    parse_presence_report,
    parse_reading,
    parse_uuid,
    printable_reason,
)
from common.settings import SettingsError, load_settings
from notifier.chat import MAX_PAYLOAD_BYTES, InvalidChatPayload, chat_message
from support.chat import (
    MAX_INBOUND_BYTES,
    clean_body,
    clean_client_message_id,
    parse_inbound,
    positive_id,
)
from support.models import MAX_BODY_CHARS
from support.presence import parse_presence
from tests.strategies import (
    DEVICE,
    NOW_MS,
    characters,
    field_values,
    json_bytes,
    json_values,
    nested,
    numbers,
    scalars,
    texts,
    with_fields,
    with_inner_fields,
)

RECEIVED_AT = "2026-11-26T17:00:00.000+00:00"

# Poison inputs found by hand or by these properties, replayed on every run.
DEEP_LIST = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000
LONG_INTEGER = b'{"timestamp": ' + b"1" * 5000 + b"}"
LONE_SURROGATE = b'{"device_id": "\\ud800", "timestamp": 1732611600000, "measurement_value": 0.1}'

# --- the property -------------------------------------------------------------------------------


def assert_refusal(error: Exception) -> None:
    """Check that a refusal explains itself in text fit for a header and a log line."""
    reason = str(error)
    assert reason.strip(), f"{type(error).__name__} without a reason"
    assert printable_reason(reason) == reason, "reasons are printable as they are raised"
    assert reason.isprintable() and len(reason) <= MAX_REASON_CHARS
    reason.encode("utf-8")


def parsed_or_refused(parse, *arguments, refusal=InvalidMessage):
    """Return what `parse` returns, or None when it refuses properly; any other exception fails."""
    try:
        return parse(*arguments)
    except refusal as error:
        assert_refusal(error)
        return None


def assert_storable(text: str) -> None:
    assert isinstance(text, str)
    text.encode("utf-8")  # what MySQL, AMQP and JSON encoders need


def assert_uuid(text: str) -> None:
    assert isinstance(text, str) and text == str(uuid.UUID(text))


def assert_valid_reading(reading) -> None:
    assert type(reading.timestamp) is int
    assert EARLIEST_READING_MS <= reading.timestamp <= NOW_MS + MAX_READING_FUTURE_MS
    assert type(reading.measurement_value) is float
    assert math.isfinite(reading.measurement_value) and 0 <= reading.measurement_value <= MAX_READING_KWH
    assert_uuid(reading.device_id)
    assert parse_reading(reading.to_json(), now_ms=NOW_MS) == reading


def check_reading(body: bytes) -> None:
    reading = parsed_or_refused(parse_reading, body, NOW_MS)
    if reading is not None:
        assert_valid_reading(reading)


# --- readings -----------------------------------------------------------------------------------

READING = {"timestamp": NOW_MS, "device_id": DEVICE, "measurement_value": 0.42}


@given(st.binary(max_size=MAX_MESSAGE_BYTES + 16))
@example(DEEP_LIST)
@example(DEEP_LIST[:MAX_MESSAGE_BYTES])
@example(DEEP_OBJECT[:MAX_MESSAGE_BYTES])
@example(LONG_INTEGER)
@example(LONE_SURROGATE)
@example(b"\xff\xfe\x00")
@example(b'{"timestamp": 1e999, "device_id": "x", "measurement_value": 1}')
@example(b"\xef\xbb\xbf{}")
@example(b'{"a": "\xed\xa0\x80"}')  # a surrogate encoded as UTF-8 bytes: not UTF-8
def test_a_reading_from_any_bytes_parses_or_is_refused(body):
    check_reading(body)


@given(json_values)
@example({"timestamp": 10**400, "device_id": DEVICE, "measurement_value": 0.1})
@example({"timestamp": NOW_MS, "device_id": DEVICE, "measurement_value": 10**400})
@example({"timestamp": NOW_MS, "device_id": DEVICE, "measurement_value": -(10**400)})
@example({"timestamp": math.nan, "device_id": DEVICE, "measurement_value": 0.1})
@example({"timestamp": NOW_MS, "device_id": DEVICE, "measurement_value": 5e-324})
@example({"timestamp": NOW_MS, "device_id": DEVICE, "measurement_value": 0.1, "\ud800\n": 1})
@example(nested(MAX_JSON_DEPTH + 1))
def test_a_reading_from_any_json_parses_or_is_refused(value):
    check_reading(json_bytes(value))


@given(with_fields(READING, field_values))
@example({**READING, "device_id": "\ud800" * 36})
@example({**READING, "device_id": "٠" * 32})
@example({**READING, "timestamp": True})
@example({**READING, "measurement_value": True})
def test_a_reading_with_any_field_of_any_type_parses_or_is_refused(value):
    check_reading(json_bytes(value))


@given(with_fields(READING, numbers))
def test_a_reading_with_absurd_numbers_parses_or_is_refused(value):
    check_reading(json_bytes(value))


@given(json_values | texts)
@example("\ud800")
@example("0" * 31 + "_0")
@example(" " + "0" * 31)
def test_a_uuid_parses_to_its_canonical_form_or_is_refused(value):
    device_id = parsed_or_refused(parse_uuid, value)
    if device_id is not None:
        assert_uuid(device_id)


def test_nesting_beyond_the_interpreters_recursion_limit_is_refused_with_a_reason():
    for body in (DEEP_LIST, DEEP_OBJECT, json_bytes(nested(MAX_JSON_DEPTH + 1))):
        with pytest.raises(InvalidMessage, match="nested deeper than"):
            load_json_object(body, max_bytes=len(body))
    assert load_json_object(json_bytes(nested(MAX_JSON_DEPTH)))["a"]


# --- events and alerts --------------------------------------------------------------------------

DEVICE_EVENT = {"sequence": 12, "type": "device.updated", "occurred_at": "2026-11-26T17:00:00.000+00:00",
                "device": {"id": DEVICE, "name": "Heat pump", "owner_id": 7, "max_hourly_kwh": 2.5}}
USER_EVENT = {"sequence": 13, "type": "user.deleted", "occurred_at": "2026-11-26T17:00:00Z",
              "user": {"id": 7, "name": "Ana", "role": "client"}}
events = st.one_of(
    json_values,
    with_fields(DEVICE_EVENT, field_values),
    with_fields(USER_EVENT, field_values),
    with_inner_fields(DEVICE_EVENT, "device", field_values),
    with_inner_fields(DEVICE_EVENT, "device", numbers),
    with_inner_fields(USER_EVENT, "user", field_values),
)


@given(events)
@example({**DEVICE_EVENT, "sequence": 10**400})
@example({**DEVICE_EVENT, "device": {**DEVICE_EVENT["device"], "max_hourly_kwh": 10**400}})
@example({**DEVICE_EVENT, "device": {**DEVICE_EVENT["device"], "max_hourly_kwh": 5e-324}})
@example({**DEVICE_EVENT, "device": {**DEVICE_EVENT["device"], "owner_id": 2**31}})
@example({**DEVICE_EVENT, "device": {**DEVICE_EVENT["device"], "name": "\ud800"}})
@example({**USER_EVENT, "user": {"id": True}})
@example({**USER_EVENT, "occurred_at": "\ud800"})
def test_an_event_parses_to_a_valid_one_or_is_refused(value):
    event = parsed_or_refused(parse_event, json_bytes(value))
    if event is None:
        return
    assert type(event.sequence) is int and 1 <= event.sequence <= MAX_ROW_ID
    datetime.fromisoformat(event.occurred_at)
    if event.device is not None:
        assert event.type in DEVICE_EVENT_TYPES
        assert_uuid(event.device.id)
        assert_storable(event.device.name)
        assert event.device.owner_id is None or 1 <= event.device.owner_id <= MAX_USER_ID
        assert MIN_DEVICE_LIMIT_KWH <= event.device.max_hourly_kwh <= MAX_DEVICE_LIMIT_KWH
    else:
        assert event.type in USER_EVENT_TYPES
        assert 1 <= event.user.id <= MAX_USER_ID
        assert_storable(event.user.name)
        assert_storable(event.user.role)
    assert parse_event(event.to_json()) == event


ALERT = {"alert_id": 3, "user_id": 7, "device_id": DEVICE, "device_name": "Heat pump",
         "hour_start": "2026-11-26T17:00:00+00:00", "kwh": 1.2, "limit_kwh": 1.0}


WARNING = {**ALERT, "kind": "warning", "kwh": 0.3, "due_at": "2026-11-26T17:47:12+00:00"}


@given(json_values | with_fields(ALERT, field_values) | with_fields(ALERT, numbers)
       | with_fields(WARNING, field_values))
@example({**ALERT, "kwh": math.inf})
@example({**WARNING, "kind": "notice"})
@example({**WARNING, "kind": ["warning"]})
@example({key: value for key, value in WARNING.items() if key != "due_at"})
@example({**ALERT, "due_at": WARNING["due_at"]})
@example({**WARNING, "due_at": "\ud800"})
@example({**ALERT, "kwh": 10**400})
@example({**ALERT, "alert_id": "1" * 30})
@example({**ALERT, "device_name": "\ud800"})
def test_an_alert_parses_to_a_valid_one_or_is_refused(value):
    alert = parsed_or_refused(parse_alert, json_bytes(value))
    if alert is None:
        return
    assert 1 <= alert.alert_id <= MAX_ROW_ID and 1 <= alert.user_id <= MAX_USER_ID
    assert_uuid(alert.device_id)
    assert_storable(alert.device_name)
    datetime.fromisoformat(alert.hour_start)
    for kwh in (alert.kwh, alert.limit_kwh):
        assert type(kwh) is float and 0 <= kwh <= MAX_STORED_KWH
    # A warning carries when it projects the limit passed; an alert (also one without a kind) does not.
    assert alert.kind in ("alert", "warning") and (alert.kind == "warning") == (alert.due_at is not None)
    if alert.due_at is not None:
        datetime.fromisoformat(alert.due_at)
    assert parse_alert(alert.to_json()) == alert


# --- support: inbound chat and presence ---------------------------------------------------------

INBOUND = {"sender": {"id": 42, "role": "client", "name": "Alice"},
           "payload": {"body": "hi", "client_message_id": "m-1", "conversation_id": 5, "message_id": 9},
           "received_at": "2026-11-26T10:00:00+00:00"}
inbound_messages = st.one_of(
    json_values,
    with_fields(INBOUND, field_values),
    with_inner_fields(INBOUND, "sender", field_values),
    with_inner_fields(INBOUND, "payload", field_values),
    with_inner_fields(INBOUND, "payload", numbers),
)


@given(st.binary(max_size=256) | inbound_messages.map(json_bytes))
@example(DEEP_LIST[:MAX_INBOUND_BYTES])
@example(DEEP_OBJECT[:MAX_INBOUND_BYTES])
@example(json_bytes({**INBOUND, "received_at": "9999-12-31T23:59:59-23:59"}))
@example(json_bytes({**INBOUND, "sender": {"id": 42, "role": "client", "name": "\ud800"}}))
@example(json_bytes({**INBOUND, "sender": {"id": 42, "role": ["client"]}}))
@example(json_bytes({**INBOUND, "sender": {"id": 2**31, "role": "client"}}))
@example(json_bytes({**INBOUND, "payload": {"body": "\ud800", "client_message_id": "m-1\n"}}))
@example(json_bytes({**INBOUND, "payload": {"conversation_id": "1" * 5000, "message_id": "²"}}))
def test_an_inbound_chat_message_and_its_fields_parse_or_are_rejected(body):
    inbound = parsed_or_refused(parse_inbound, body)
    if inbound is None:
        return
    assert 1 <= inbound.sender.user_id <= MAX_USER_ID and inbound.sender.role in ROLES
    assert_storable(inbound.sender.name)
    assert len(inbound.sender.name) <= 120
    assert isinstance(inbound.payload, dict) and inbound.received_at.tzinfo is None
    payload = inbound.payload
    text = parsed_or_refused(clean_body, payload.get("body"))
    if text is not None:
        assert_storable(text)
        assert text == text.strip() and 1 <= len(text) <= MAX_BODY_CHARS
    client_message_id = parsed_or_refused(clean_client_message_id, payload.get("client_message_id"))
    if client_message_id is not None:
        assert client_message_id.isascii() and "\n" not in client_message_id and len(client_message_id) <= 64
    for field in ("conversation_id", "message_id"):
        row_id = parsed_or_refused(positive_id, payload.get(field), field)
        assert row_id is None or (type(row_id) is int and 1 <= row_id <= MAX_ROW_ID)


PRESENCE = {"instance": "notifier-1", "admin_ids": [3, 1], "at": "2026-11-26T17:00:00.000+00:00"}


@given(st.dictionaries(texts, json_values, max_size=4) | with_fields(PRESENCE, field_values)
       | st.builds(lambda ids: {**PRESENCE, "admin_ids": ids}, st.lists(numbers, max_size=4)))
@example({**PRESENCE, "at": "0001-01-01T00:00:00+01:00"})
@example({**PRESENCE, "instance": "\ud800"})
@example({**PRESENCE, "admin_ids": [10**400]})
def test_a_presence_report_parses_or_is_rejected(value):
    report = parsed_or_refused(lambda: parse_presence(load_json_object(json_bytes(value))))
    if report is None:
        return
    instance, admin_ids, reported_at = report
    assert_storable(instance)
    assert 1 <= len(instance) <= 120
    assert admin_ids == sorted(set(admin_ids)) and all(1 <= i <= MAX_USER_ID for i in admin_ids)
    assert reported_at is None or reported_at.tzinfo is None


@given(st.binary(max_size=256) | inbound_messages.map(json_bytes))
@example(json_bytes({**INBOUND, "received_at": "2026-11-26T12:00:00.123456+02:00"}))
@example(json_bytes({**INBOUND, "payload": {"body": "x" * CHAT_PAYLOAD_MAX_BYTES}}))
def test_a_chat_message_parses_or_is_refused_and_encodes_back_to_itself(body):
    message = parsed_or_refused(parse_chat_message, body)
    if message is None:
        return
    encoded = parsed_or_refused(message.to_json)  # a payload support takes may be beyond a browser's
    if encoded is None:
        return
    again = parse_chat_message(encoded)
    assert again.sender == message.sender and again.payload == message.payload
    # The message carries its time to the millisecond, as the notifier stamps it.
    assert abs(again.received_at - message.received_at) < timedelta(milliseconds=1)


senders = st.builds(Identity, st.integers(1, MAX_USER_ID), st.sampled_from(ROLES),
                    st.text(max_size=SENDER_NAME_MAX_CHARS))  # Hypothesis' text holds no lone surrogate
to_the_millisecond = st.datetimes().map(
    lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))


@given(st.builds(ChatMessage, senders, st.dictionaries(texts, json_values, max_size=4), to_the_millisecond))
def test_every_chat_message_the_notifier_can_encode_is_what_support_parses(message):
    encoded = parsed_or_refused(message.to_json)
    if encoded is not None:
        assert parse_chat_message(encoded) == message


@given(st.binary(max_size=128) | st.dictionaries(texts, json_values, max_size=4).map(json_bytes)
       | with_fields(PRESENCE, field_values).map(json_bytes))
@example(json_bytes({**PRESENCE, "at": "2026-11-26T17:00:00.123456-05:00"}))
def test_a_presence_report_parses_or_is_refused_and_encodes_back_to_itself(body):
    report = parsed_or_refused(parse_presence_report, body)
    if report is not None:
        assert parse_presence_report(report.to_json()) == report
        assert list(report.admin_ids) == sorted(set(report.admin_ids))


# --- notifier: what browsers send ---------------------------------------------------------------

ANA = Identity(7, "client", "Ana")
# A browser's socket.io payload is whatever its JSON decoder made of the frame; Python callers
# could add keys and values JSON has no form for.
browser_values = st.recursive(
    st.one_of(scalars, st.binary(max_size=8), st.tuples(st.integers())),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(texts, st.integers(), st.floats(), st.none(), st.tuples(st.integers())),
                      children, max_size=4),
    max_leaves=25,
)


@given(browser_values | st.dictionaries(texts, browser_values, max_size=4))
@example({"body": "\ud800"})
@example({"\udfff": "key"})
@example({"body": nested(MAX_JSON_DEPTH - 1)})  # fits alone, one level too deep inside the message
@example({"body": nested(MAX_JSON_DEPTH - 2)})
@example({"body": math.nan})
@example({(1, 2): "tuple key"})
@example({"body": b"bytes"})
@example({"body": "x" * MAX_PAYLOAD_BYTES})
def test_a_browser_chat_payload_is_encoded_for_support_or_refused(payload):
    body = parsed_or_refused(chat_message, ANA, payload, RECEIVED_AT, refusal=InvalidChatPayload)
    if body is None:
        return
    body.decode("utf-8")
    # Whatever the notifier publishes, support's parser takes: nothing valid is dead-lettered.
    inbound = parse_inbound(body)
    assert inbound.sender == ANA and isinstance(inbound.payload, dict)


def test_a_browser_payload_nested_beyond_the_recursion_limit_is_refused():
    # Not an @example: Hypothesis' own printing of it would hit the recursion limit.
    with pytest.raises(InvalidChatPayload, match="nests deeper than"):
        chat_message(ANA, nested(100_000), RECEIVED_AT)


# --- unit rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("plain reason", "plain reason"),
    ("ça chauffe 😀", "ça chauffe 😀"),  # printable non-ASCII stays: AMQP headers are UTF-8
    ("line\nbreak\r\tand\x00nul", "line\\nbreak\\r\\tand\\x00nul"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ("\u2028separator", "\\u2028separator"),
    ("", ""),
])
def test_printable_reason_escapes_what_would_break_a_header_or_a_log_line(text, expected):
    assert printable_reason(text) == expected


def test_printable_reason_cuts_long_reasons_and_marks_the_cut():
    assert printable_reason("x" * MAX_REASON_CHARS) == "x" * MAX_REASON_CHARS
    cut = printable_reason("x" * (MAX_REASON_CHARS + 1))
    assert len(cut) == MAX_REASON_CHARS and cut.endswith("…")
    assert printable_reason("\n" * 10_000, limit=9) == "\\n\\n\\n\\n…"
    assert printable_reason(ValueError("not text")) == "not text"


@given(st.text(characters, max_size=600), st.integers(min_value=1, max_value=600))
def test_printable_reason_is_printable_short_and_stable(text, limit):
    reason = printable_reason(text, limit)
    assert reason.isprintable() and len(reason) <= limit
    reason.encode("utf-8")
    assert bool(reason) == bool(text)
    assert printable_reason(reason, limit) == reason


def reading_at(timestamp: int) -> bytes:
    return json_bytes({**READING, "timestamp": timestamp})


def test_a_reading_a_second_inside_five_minutes_ahead_is_accepted_a_second_beyond_refused():
    assert MAX_READING_FUTURE_MS == 5 * 60 * 1000
    inside = NOW_MS + MAX_READING_FUTURE_MS - 1000
    assert parse_reading(reading_at(inside), now_ms=NOW_MS).timestamp == inside
    with pytest.raises(InvalidMessage, match=r"^future-timestamp:"):
        parse_reading(reading_at(NOW_MS + MAX_READING_FUTURE_MS + 1000), now_ms=NOW_MS)


def test_the_future_limit_is_measured_on_this_processs_clock_by_default():
    now = int(time.time() * 1000)
    assert parse_reading(reading_at(now + MAX_READING_FUTURE_MS - 60_000))
    with pytest.raises(InvalidMessage, match=r"^future-timestamp:"):
        parse_reading(reading_at(now + MAX_READING_FUTURE_MS + 60_000))


def test_the_allowed_clock_skew_is_a_setting(monkeypatch):
    monkeypatch.setenv("EMS_JWT_SECRET", "s" * 40)
    monkeypatch.delenv("EMS_MAX_CLOCK_SKEW_SECONDS", raising=False)
    assert load_settings().max_clock_skew_seconds * 1000 == MAX_READING_FUTURE_MS
    monkeypatch.setenv("EMS_MAX_CLOCK_SKEW_SECONDS", "60")
    max_future_ms = load_settings().max_clock_skew_seconds * 1000
    assert parse_reading(reading_at(NOW_MS + 59_000), now_ms=NOW_MS, max_future_ms=max_future_ms)
    with pytest.raises(InvalidMessage, match=r"^future-timestamp:"):
        parse_reading(reading_at(NOW_MS + 61_000), now_ms=NOW_MS, max_future_ms=max_future_ms)
    monkeypatch.setenv("EMS_MAX_CLOCK_SKEW_SECONDS", "-1")
    with pytest.raises(SettingsError, match="MAX_CLOCK_SKEW_SECONDS"):
        load_settings()
