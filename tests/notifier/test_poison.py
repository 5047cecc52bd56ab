"""Live poison test of the alert bridge: whatever lands on `notifier.alerts` is dead-lettered
once with a reason, and the valid alerts behind it still reach the browser."""

from __future__ import annotations

import json
import time
from collections import Counter

from common.amqp import connect, take_all
from common.topology import (
    ALERTS_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    DEAD_LETTERS_QUEUE,
    NOTIFIER_ALERTS_QUEUE,
    alert_routing_key,
)
from tests.notifier.conftest import make_alert, new_user_id, publish_alert, token_for
from tests.poison import POISON, publish_poison


def drain_dead_letters(settings, routing_key: str) -> list:
    """Take the dead letters published with `routing_key`."""
    connection = connect(settings)
    try:
        messages = take_all(connection.channel(), DEAD_LETTERS_QUEUE)
        return [(properties, body) for method, properties, body in messages
                if method.routing_key == routing_key]
    finally:
        connection.close()


def test_poison_alerts_are_dead_lettered_and_the_next_alert_arrives(settings, notifier, connect_browser,
                                                                     publisher):
    owner = new_user_id()
    browser = connect_browser(token_for(settings, owner))
    pid = notifier.process.pid
    connection = connect(settings)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        publish_poison(channel, ALERTS_EXCHANGE, alert_routing_key(owner))
    finally:
        connection.close()
    alert = make_alert(owner)

    publish_alert(publisher, alert)

    assert browser.next_event("alert", timeout=5)["alert_id"] == alert.alert_id
    assert notifier.running and notifier.process.pid == pid, notifier.log()[-3000:]
    dead: list = []
    deadline = time.monotonic() + 10
    while len(dead) < len(POISON) and time.monotonic() < deadline:
        dead += drain_dead_letters(settings, f"{NOTIFIER_ALERTS_QUEUE}.{alert_routing_key(owner)}")
        time.sleep(0.2)
    assert Counter(body for _, body in dead) == Counter(body for _, body, _ in POISON)
    for properties, _ in dead:
        assert properties.headers[DEAD_LETTER_SOURCE_HEADER] == NOTIFIER_ALERTS_QUEUE
        reason = properties.headers[DEAD_LETTER_REASON_HEADER]
        assert reason and reason.isprintable(), reason


# What only the warning path adds: a kind the bridge does not know, a warning with no time
# to announce, an alert that carries one. Each is refused by `parse_alert`, never emitted.
WARNING_POISON = [
    ("unknown kind", {"kind": "notice"}),
    ("warning without due_at", {"kind": "warning"}),
    ("warning with a bad due_at", {"kind": "warning", "due_at": "at about teatime"}),
    ("alert with a due_at", {"kind": "alert", "due_at": "2026-11-26T17:47:00+00:00"}),
]


def test_poison_warnings_are_dead_lettered_and_the_next_warning_arrives(settings, notifier, connect_browser,
                                                                        publisher):
    owner = new_user_id()
    browser = connect_browser(token_for(settings, owner))
    bodies = []
    for _, fields in WARNING_POISON:
        valid = json.loads(make_alert(owner).to_json())
        bodies.append(json.dumps({**valid, **fields}).encode())
        publisher.publish(ALERTS_EXCHANGE, alert_routing_key(owner), bodies[-1])
    warning = make_alert(owner, kind="warning", due_at="2026-11-26T17:47:00+00:00")

    publish_alert(publisher, warning)

    event = browser.next_event("alert", timeout=5)
    assert (event["alert_id"], event["kind"]) == (warning.alert_id, "warning")
    dead: list = []
    deadline = time.monotonic() + 10
    while len(dead) < len(bodies) and time.monotonic() < deadline:
        dead += drain_dead_letters(settings, f"{NOTIFIER_ALERTS_QUEUE}.{alert_routing_key(owner)}")
        time.sleep(0.2)
    assert Counter(body for _, body in dead) == Counter(bodies)
    assert all(properties.headers[DEAD_LETTER_REASON_HEADER] for properties, _ in dead)
