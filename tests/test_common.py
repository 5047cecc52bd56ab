"""The shared package: settings, reading validation, topology and tokens."""

import json
import math
import secrets
from datetime import timedelta

import jwt
import pika
import pytest

from common.auth import Identity, decode_access_token, mint_access_token
from common.messages import InvalidMessage, parse_reading
from common.settings import SettingsError, load_settings
from common.topology import DEAD_LETTERS_QUEUE, declare_topology, ingest_queue, queues, shared_queues
from tests.isolation import own_vhost

DEVICE = "0b6d5c7e-8a4f-4c1e-9d5b-2f6a7e8b9c01"
NOW_MS = 1_732_611_600_000


def reading_body(**fields) -> bytes:
    body = {"timestamp": NOW_MS, "device_id": DEVICE, "measurement_value": 0.42, **fields}
    return json.dumps(body).encode()


def test_valid_reading_parses_to_canonical_form():
    reading = parse_reading(reading_body(device_id=DEVICE.upper()), now_ms=NOW_MS)
    assert reading.device_id == DEVICE
    assert reading.measurement_value == 0.42
    assert reading.at.isoformat() == "2024-11-26T09:00:00+00:00"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"timestamp": NOW_MS, "device_id": DEVICE}).encode(), "missing field"),
        (reading_body(extra=1), "unexpected field"),
        (reading_body(measurement_value=-0.1), "must not be negative"),
        (reading_body(measurement_value="0.4"), "must be a number"),
        (reading_body(measurement_value=True), "must be a number"),
        (reading_body(measurement_value=10_000), "absurd"),
        (reading_body(timestamp=1.5), "integer of epoch milliseconds"),
        (reading_body(timestamp=5), "out of range"),
        (reading_body(device_id="meter-7"), "is not a UUID"),
        (b'{"timestamp": 1, "device_id": "x", "measurement_value": NaN}', "out of range"),
        (b" " * 5000, "exceeds"),
    ],
)
def test_invalid_reading_is_refused_with_its_reason(body, reason):
    with pytest.raises(InvalidMessage, match=reason):
        parse_reading(body, now_ms=NOW_MS)


def test_nan_and_infinite_values_are_refused():
    for value in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"timestamp": {NOW_MS}, "device_id": "{DEVICE}", "measurement_value": {value}}}'
        with pytest.raises(InvalidMessage):
            parse_reading(body.encode(), now_ms=NOW_MS)
    assert not math.isfinite(float("nan"))


def test_production_refuses_to_start_without_a_jwt_secret(monkeypatch):
    monkeypatch.setenv("EMS_ENV", "production")
    monkeypatch.delenv("EMS_JWT_SECRET", raising=False)
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        load_settings()


def test_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret_file = tmp_path / "jwt"
    secret_file.write_text("from-a-docker-secret-of-a-decent-length\n")
    monkeypatch.setenv("EMS_ENV", "production")
    monkeypatch.delenv("EMS_JWT_SECRET", raising=False)
    monkeypatch.setenv("EMS_JWT_SECRET_FILE", str(secret_file))
    assert load_settings().jwt_secret == "from-a-docker-secret-of-a-decent-length"


def test_access_token_round_trip_and_refusals(settings):
    alice = Identity(user_id=7, role="client", name="Alice")
    assert decode_access_token(mint_access_token(settings, alice), settings) == alice

    expired = mint_access_token(settings, alice, expires_delta=timedelta(seconds=-5))
    with pytest.raises(jwt.ExpiredSignatureError):
        decode_access_token(expired, settings)

    forged = mint_access_token(load_settings(jwt_secret="someone-else-with-a-long-enough-key-000"), alice)
    with pytest.raises(jwt.InvalidSignatureError):
        decode_access_token(forged, settings)


def test_topology_declares_the_shared_queues_and_leaves_ingest_queues_to_their_replicas(settings):
    with own_vhost("topology-" + secrets.token_hex(3)) as amqp_url:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            channel = connection.channel()
            declare_topology(channel)
            declare_topology(channel)  # idempotent
            for queue in shared_queues():
                channel.queue_declare(queue=queue.name, passive=True)
            channel.queue_declare(queue=DEAD_LETTERS_QUEUE, passive=True)
            with pytest.raises(pika.exceptions.ChannelClosedByBroker):
                channel.queue_declare(queue=ingest_queue(1), passive=True)
        finally:
            if connection.is_open:
                connection.close()
    assert [q.name for q in queues(3) if q.name.startswith("ingest.")] == [ingest_queue(n) for n in (1, 2, 3)]


@pytest.mark.parametrize(
    ("query", "cookie", "expected"),
    [
        ("", "Europe%2FBucharest", "Europe/Bucharest"),  # as the browser's ems.js stores it
        ("", "America/New_York", "America/New_York"),
        ("?tz=Asia/Tokyo", "Europe%2FBucharest", "Asia/Tokyo"),
        ("", "Not/AZone", "UTC"),
        ("", None, "UTC"),
    ],
)
def test_viewer_timezone_comes_from_the_query_then_the_browser_cookie(query, cookie, expected):
    from flask import Flask

    from common.pages import TIMEZONE_COOKIE, viewer_timezone

    app = Flask("timezone-test")
    headers = {"Cookie": f"{TIMEZONE_COOKIE}={cookie}"} if cookie else {}
    with app.test_request_context("/" + query, headers=headers):
        assert viewer_timezone().key == expected


def test_a_log_field_named_like_a_log_record_attribute_is_written_not_refused(caplog):
    import logging

    from common.logs import KeyValueFormatter, log_event

    with caplog.at_level(logging.INFO):
        log_event(logging.getLogger("ems.test"), "metrics.serving", process="balancer", created=1, port=9)
    line = KeyValueFormatter("test").format(caplog.records[-1])
    assert "process_=balancer" in line and "created_=1" in line and "port=9" in line
