"""Poison messages: what a hostile or broken publisher can put on any EMS queue.

Shared by the live poison tests of every consumer: each must dead-letter all of
these with a reason and go on with the valid messages behind them.
"""

from __future__ import annotations

import json
import uuid

import pika

DEVICE = str(uuid.UUID(int=7))


def _reading_with(**fields) -> bytes:
    reading = {"timestamp": 1_732_611_600_000, "device_id": DEVICE, "measurement_value": 0.5, **fields}
    return json.dumps(reading).encode()


def _nested_headers(depth: int) -> dict:
    headers: dict = {}
    level = headers
    for _ in range(depth):
        level["a"] = {}
        level = level["a"]
    return headers


# (label, body, AMQP headers or None). Labels name the case in failure messages.
POISON: list[tuple[str, bytes, dict | None]] = [
    ("empty body", b"", None),
    ("invalid UTF-8", b"\xff\xfe\xfd{", None),
    ("not JSON", b"hello, meter", None),
    ("a JSON array", b"[1, 2, 3]", None),
    ("a JSON string", b'"reading"', None),
    # Within the readings' 4 KiB, and far deeper than Python's default recursion limit.
    ("deep nesting", b"[" * 2000 + b"]" * 2000, None),
    ("deep object nesting", b'{"a":' * 600 + b"1" + b"}" * 600, None),
    ("deeper nesting", b"[" * 8000 + b"]" * 8000, None),
    ("oversized body", b'{"pad": "' + b"x" * 1_048_576 + b'"}', None),
    ("integer timestamp beyond any float", _reading_with(timestamp=10**400), None),
    ("value beyond any float", _reading_with(measurement_value=10**400), None),
    ("value beyond any float, negative", _reading_with(measurement_value=-(10**400)), None),
    ("infinite value", b'{"timestamp": 1732611600000, "device_id": "%s", "measurement_value": 1e999}'
     % DEVICE.encode(), None),
    ("NaN value", b'{"timestamp": 1732611600000, "device_id": "%s", "measurement_value": NaN}'
     % DEVICE.encode(), None),
    ("5,000-digit number", b'{"timestamp": ' + b"9" * 5000 + b"}", None),
    ("lone surrogate", b'{"timestamp": 1732611600000, "device_id": "\\ud800", "measurement_value": 1}', None),
    ("surrogate in a key", b'{"\\udfff": 1, "timestamp": 1732611600000}', None),
    ("wrong types", json.dumps({"timestamp": "soon", "device_id": 42, "measurement_value": [1]}).encode(),
     None),
    ("bools for numbers", _reading_with(timestamp=True, measurement_value=False), None),
    ("every field an object", json.dumps({"timestamp": {}, "device_id": {}, "measurement_value": {},
                                          "type": {}, "sequence": {}, "sender": {}, "payload": {}}).encode(),
     None),
    ("null fields", json.dumps({"timestamp": None, "device_id": None, "measurement_value": None}).encode(),
     None),
    # pika decodes header tables recursively: this once dropped the consumer's connection.
    ("headers nested 15,000 deep", b"{}", _nested_headers(15_000)),
]


def publish_poison(channel, exchange: str, routing_key: str) -> int:
    """Publish every poison message with confirms (the channel must be in confirm mode); return how many."""
    for _, body, headers in POISON:
        channel.basic_publish(exchange, routing_key, body,
                              pika.BasicProperties(delivery_mode=2, headers=headers,
                                                   message_id=f"poison-{len(body)}"),
                              mandatory=True)
    return len(POISON)
