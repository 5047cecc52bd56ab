"""Poison on `support.inbound`: whatever a broken or hostile publisher puts on the queue,
the running consumer dead-letters each message once with its reason, keeps its pid,
and processes the valid messages behind them at once."""

from __future__ import annotations

import json
import secrets
import time
import uuid

import pytest

from common.topology import (
    CHAT_MESSAGE_KEY,
    CHAT_PRESENCE_KEY,
    CHAT_READ_KEY,
    CHAT_TYPING_KEY,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    SUPPORT_INBOUND_QUEUE,
)
from tests.support.conftest import client_message, conversation_roles, new_user_id, wait_until

pytestmark = pytest.mark.slow

VALID_WITHIN_SECONDS = 5
# Long enough for a second dead letter of the same message to show up, if there were one.
DUPLICATE_GRACE_SECONDS = 1.0


def chat(marker: str, sender=None, payload=None, received_at="2026-11-26T12:00:00+00:00") -> bytes:
    """Return a chat message whose fields are replaced as given; `marker` names it."""
    sender = {"id": new_user_id(), "role": "client", "name": "Poison"} if sender is None else sender
    payload = {"client_message_id": marker, "body": "hello"} if payload is None else payload
    return json.dumps({"sender": sender, "payload": payload, "received_at": received_at,
                       "marker": marker}).encode()


def raw(marker: str, rest: bytes) -> bytes:
    """Return bytes that start a JSON object holding `marker` and go on with `rest`."""
    return b'{"m": "' + marker.encode() + b'", ' + rest


def poison_messages(run: str) -> list[tuple[str, str, bytes]]:
    """Return (marker, routing key, body) of every kind of poison; each body holds its marker."""
    admin = {"id": new_user_id(), "role": "admin", "name": "Admin"}
    message, typing, read = CHAT_MESSAGE_KEY, CHAT_TYPING_KEY, CHAT_READ_KEY
    kinds = {  # label -> (routing key, function of the marker that returns the body)
        "bad-json": (message, lambda m: raw(m, b'"sender": {"id": 1,')),
        "invalid-utf8": (message, lambda m: raw(m, b'"x": "\xff\xfe"}')),
        "encoded-surrogate": (message, lambda m: raw(m, b'"x": "\xed\xa0\x80"}')),
        "array": (message, lambda m: json.dumps([m]).encode()),
        "deep-nesting": (message, lambda m: raw(m, b'"x": ' + b"[" * 5000 + b"]" * 5000 + b"}")),
        "deeper-than-the-size-limit": (CHAT_MESSAGE_KEY,
                                       lambda m: raw(m, b'"x": ' + b"[" * 20000 + b"]" * 20000 + b"}")),
        "megabyte": (message, lambda m: raw(m, b'"pad": "' + b"x" * 1_048_576 + b'"}')),
        "too-many-digits": (message, lambda m: raw(m, b'"sender": {"id": ' + b"9" * 5000 + b"}}")),
        "huge-sender-id": (message, lambda m: chat(m, sender={"id": 3_000_000_000, "role": "client"})),
        "astronomic-sender-id": (message, lambda m: chat(m, sender={"id": 10**400, "role": "admin"})),
        "bool-sender-id": (message, lambda m: chat(m, sender={"id": True, "role": "client"})),
        "huge-conversation-id": (message, lambda m: chat(m, sender=admin, payload={
            "conversation_id": 10**30, "client_message_id": "x1", "body": "hi"})),
        "sender-a-string": (message, lambda m: chat(m, sender="42")),
        "body-a-number": (message, lambda m: chat(m, payload={"client_message_id": "x2", "body": 42})),
        "message-id-an-object": (CHAT_MESSAGE_KEY,
                                 lambda m: chat(m, payload={"client_message_id": {}, "body": "hi"})),
        "lone-surrogate-in-body": (message, lambda m: chat(m, payload={
            "client_message_id": "x3", "body": "hi \ud800 there"})),
        "lone-surrogate-in-name": (message, lambda m: chat(m, sender={
            "id": new_user_id(), "role": "client", "name": "\udfff"})),
        "time-beyond-year-9999": (message, lambda m: chat(m, received_at="9999-12-31T23:59:59-23:59")),
        "unknown-routing-key": ("inbound.unknown", chat),
        "typing-in-no-conversation": (typing, lambda m: chat(m, payload={"conversation_id": 10**18})),
        "read-of-no-message": (read, lambda m: chat(m, payload={"conversation_id": 1, "message_id": -3})),
        "presence-of-huge-admin-ids": (CHAT_PRESENCE_KEY, lambda m: json.dumps(
            {"instance": m, "admin_ids": [10**30]}).encode()),
    }
    markers = {label: f"poison-{label}-{run}" for label in kinds}
    return [(markers[label], key, body(markers[label])) for label, (key, body) in kinds.items()]


def test_poison_is_dead_lettered_once_each_and_what_follows_is_processed(
        migrated, chat_services, publish_chat, dead_letter_copies):
    consumer = chat_services["processes"][2]
    pid = consumer.process.pid
    poison = poison_messages(secrets.token_hex(3))
    clients = [new_user_id() for _ in range(5)]
    valid = [(client, uuid.uuid4().hex) for _ in range(2) for client in clients]

    for _, routing_key, body in poison:
        publish_chat(routing_key, body)
    for client, client_message_id in valid:
        publish_chat(CHAT_MESSAGE_KEY, client_message(client, client_message_id))
    published = time.monotonic()

    wait_until(lambda: sum(len(m) for m in conversation_roles(migrated, clients).values()) >= 2 * len(valid),
               timeout=VALID_WITHIN_SECONDS, message="the valid messages and their answers behind the poison")
    assert time.monotonic() - published < VALID_WITHIN_SECONDS

    def dead_lettered(marker: str) -> list[dict]:
        return [headers for headers, body in dead_letter_copies() if marker.encode() in body]

    wait_until(lambda: all(dead_lettered(marker) for marker, _, _ in poison), timeout=10,
               message="every poison message dead-lettered")
    time.sleep(DUPLICATE_GRACE_SECONDS)
    for marker, _, _ in poison:
        copies = dead_lettered(marker)
        assert len(copies) == 1, f"{marker} was dead-lettered {len(copies)} times"
        assert copies[0][DEAD_LETTER_REASON_HEADER], f"{marker} has no reason"
        assert copies[0][DEAD_LETTER_SOURCE_HEADER] == SUPPORT_INBOUND_QUEUE
    assert consumer.running and consumer.process.pid == pid, consumer.log()[-3000:]
