"""Validation of inbound chat messages (what the notifier publishes to ems.chat)."""

import json
from datetime import datetime

import pytest

from support.chat import Rejected, clean_body, clean_client_message_id, parse_inbound, positive_id
from support.presence import parse_presence

SENDER = {"id": 42, "role": "client", "name": "Alice"}


def inbound(**overrides) -> bytes:
    message = {"sender": SENDER, "payload": {"body": "hi"}, "received_at": "2026-11-26T10:00:00+00:00",
               **overrides}
    return json.dumps(message).encode()


def test_valid_message_gives_the_verified_sender_and_utc_time():
    parsed = parse_inbound(inbound(received_at="2026-11-26T12:00:00+02:00"))
    assert (parsed.sender.user_id, parsed.sender.role, parsed.sender.name) == (42, "client", "Alice")
    assert parsed.payload == {"body": "hi"}
    assert parsed.received_at.isoformat() == "2026-11-26T10:00:00"


@pytest.mark.parametrize(("body", "reason"), [
    (b"{nope", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (inbound(sender="42"), "sender and payload must be objects"),
    (inbound(payload=None), "sender and payload must be objects"),
    (inbound(sender={"id": "42", "role": "client"}), "sender.id must be a positive integer"),
    (inbound(sender={"id": True, "role": "client"}), "sender.id must be a positive integer"),
    (inbound(sender={"id": 0, "role": "client"}), "sender.id must be a positive integer"),
    (inbound(sender={"id": 4, "role": "root"}), "sender.role must be admin or client"),
    (inbound(received_at="yesterday"), "received_at must be an ISO-8601 time"),
    (b"{" + b" " * 20_000 + b"}", "exceeds"),
])
def test_invalid_messages_are_rejected_with_a_reason(body, reason):
    with pytest.raises(Rejected, match=reason):
        parse_inbound(body)


@pytest.mark.parametrize(("raw", "expected"), [
    ("  hello  ", "hello"),
    ("line one\nline two", "line one\nline two"),
    ("<b>bold</b>", "<b>bold</b>"),  # stored as typed; pages escape it
    ("é" * 2000, "é" * 2000),
])
def test_bodies_are_trimmed_and_kept_as_typed(raw, expected):
    assert clean_body(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "empty"), ("   \n ", "empty"), (None, "must be a string"), (12, "must be a string"),
    ("x" * 2001, "limit is 2000"),
])
def test_empty_or_oversized_bodies_are_rejected(raw, reason):
    with pytest.raises(Rejected, match=reason):
        clean_body(raw)


@pytest.mark.parametrize("raw", ["", "a" * 65, "has space", "semi;colon", None, 5])
def test_client_message_ids_are_short_plain_tokens(raw):
    with pytest.raises(Rejected):
        clean_client_message_id(raw)
    assert clean_client_message_id("3f2b-11:ab_c.d") == "3f2b-11:ab_c.d"


@pytest.mark.parametrize(("raw", "valid"), [(5, True), ("7", True), (0, False), (-1, False),
                                            (True, False), ("x", False), (None, False), (2.5, False)])
def test_ids_must_be_positive_integers(raw, valid):
    if valid:
        assert positive_id(raw, "message_id") == int(raw)
    else:
        with pytest.raises(Rejected, match="message_id must be a positive integer"):
            positive_id(raw, "message_id")


@pytest.mark.parametrize(("value", "valid"), [
    ({"instance": "n-1", "admin_ids": [3, 1, 3]}, True),
    ({"instance": "n-1", "admin_ids": []}, True),
    ({"instance": "", "admin_ids": []}, False),
    ({"instance": "n-1", "admin_ids": ["3"]}, False),
    ({"instance": "n-1"}, False),
    ({"instance": "n-1", "admin_ids": [], "at": "yesterday"}, False),
])
def test_presence_reports_are_validated(value, valid):
    if valid:
        assert parse_presence(value) == ("n-1", sorted(set(value["admin_ids"])), None)
    else:
        with pytest.raises(Rejected):
            parse_presence(value)


def test_a_presence_report_counts_from_when_it_was_made():
    report = {"instance": "n-1", "admin_ids": [4], "at": "2026-11-26T17:00:00.000+01:00"}
    assert parse_presence(report)[2] == datetime(2026, 11, 26, 16, 0)
