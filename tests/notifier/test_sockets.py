"""A real notifier process, real RabbitMQ, python-socketio clients."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
import socketio

from common.realtime import socketio_emitter, user_room
from tests.notifier.conftest import make_alert, new_user_id, publish_alert, token_for

REFUSED = socketio.exceptions.ConnectionError


def test_alert_reaches_its_owner_within_one_second(settings, connect_browser, publisher):
    owner = new_user_id()
    browser = connect_browser(token_for(settings, owner))
    alert = make_alert(owner)

    published_at = time.monotonic()
    publish_alert(publisher, alert)
    received = browser.next_event("alert")
    latency = time.monotonic() - published_at

    assert received == {**dataclasses.asdict(alert), "url": f"/monitor/devices/{alert.device_id}"}
    assert latency < 1.0


def test_alert_never_reaches_another_client(settings, connect_browser, publisher):
    owner, other = new_user_id(), new_user_id()
    owner_browser = connect_browser(token_for(settings, owner))
    other_browser = connect_browser(token_for(settings, other))

    owners_alert, own_alert = make_alert(owner), make_alert(other)
    publish_alert(publisher, owners_alert)
    publish_alert(publisher, own_alert)

    # Both sockets are on one notifier, and one emit reaches every socket of its
    # rooms: once the owner has the alert, a wrong room would have had it too.
    assert owner_browser.next_event("alert")["alert_id"] == owners_alert.alert_id
    assert other_browser.next_event("alert")["alert_id"] == own_alert.alert_id
    assert other_browser.received_now("alert") == []


def test_every_alert_reaches_the_admins_room(settings, connect_browser, publisher):
    admin = connect_browser(token_for(settings, new_user_id(), role="admin"))
    alerts = [make_alert(new_user_id()) for _ in range(3)]
    for alert in alerts:
        publish_alert(publisher, alert)

    expected = {alert.alert_id for alert in alerts}
    received = set()
    while received != expected:
        # The admins' room also hears the alerts of other tests' users.
        alert_id = admin.next_event("alert")["alert_id"]
        if alert_id in expected:
            received.add(alert_id)


def test_every_socket_of_a_user_gets_the_alert(settings, connect_browser, publisher):
    owner = new_user_id()
    tabs = [connect_browser(token_for(settings, owner)) for _ in range(2)]
    alert = make_alert(owner)

    publish_alert(publisher, alert)

    assert [tab.next_event("alert")["alert_id"] for tab in tabs] == [alert.alert_id] * 2


def test_the_access_token_cookie_authenticates_a_socket(settings, connect_browser, publisher):
    owner = new_user_id()
    browser = connect_browser(cookie=token_for(settings, owner))
    alert = make_alert(owner)

    publish_alert(publisher, alert)

    assert browser.next_event("alert")["alert_id"] == alert.alert_id


def test_connecting_without_a_token_is_refused(connect_browser):
    with pytest.raises(REFUSED, match="unauthorized"):
        connect_browser()


def test_connecting_with_a_forged_token_is_refused(settings, connect_browser):
    forger = dataclasses.replace(settings, jwt_secret="not-the-portal-secret-but-as-long")  # noqa: S106

    with pytest.raises(REFUSED, match="unauthorized"):
        connect_browser(token_for(forger, new_user_id(), role="admin"))


def test_connecting_with_an_expired_token_is_refused(settings, connect_browser):
    expired = token_for(settings, new_user_id(), expires=timedelta(seconds=-5))

    with pytest.raises(REFUSED, match="unauthorized"):
        connect_browser(cookie=expired)


def test_a_page_of_another_site_cannot_open_a_socket(settings, connect_browser):
    token = token_for(settings, new_user_id())

    with pytest.raises(REFUSED):
        connect_browser(cookie=token, origin="https://evil.example")


def test_a_page_of_the_portal_can_open_a_socket(settings, connect_browser):
    browser = connect_browser(cookie=token_for(settings, new_user_id()), origin=settings.public_url)

    assert browser.client.connected


def test_other_processes_emit_to_a_user_room_through_the_message_queue(settings, connect_browser):
    owner = new_user_id()
    browser = connect_browser(token_for(settings, owner))

    socketio_emitter(settings).emit("chat:message", {"body": "hello"}, to=user_room(owner))

    assert browser.next_event("chat:message") == {"body": "hello"}


def test_an_invalid_alert_is_dead_lettered_and_the_bridge_goes_on(settings, connect_browser,
                                                                 publisher):
    from tests.notifier.conftest import QueueTap

    owner = new_user_id()
    browser = connect_browser(token_for(settings, owner))
    dead = QueueTap(settings, "ems.dlx", "#")
    try:
        publisher.publish("ems.alerts", f"overconsumption.{owner}", b'{"user_id": "nobody"}')
        routing_key, message = dead.next_where(lambda key, body: body.get("user_id") == "nobody")
        # Dead-lettered as every EMS consumer does: the source queue, then the original routing key.
        assert routing_key == f"notifier.alerts.overconsumption.{owner}"
    finally:
        dead.close()
    alert = make_alert(owner)
    publish_alert(publisher, alert)

    assert browser.next_event("alert")["alert_id"] == alert.alert_id
    assert browser.received_now("alert") == []


def test_a_client_cannot_enter_another_users_room(settings, connect_browser, publisher):
    intruder, victim = new_user_id(), new_user_id()
    browser = connect_browser(token_for(settings, intruder))
    victim_browser = connect_browser(token_for(settings, victim))
    for event in ("join", "enter_room", "join_room", "subscribe"):
        browser.client.emit(event, {"room": user_room(victim), "user_id": victim})
    browser.client.call("chat:send", {"client_message_id": "m-9", "body": "hi", "user_id": victim},
                        timeout=5)

    victims_alert, own_alert = make_alert(victim), make_alert(intruder)
    publish_alert(publisher, victims_alert)
    publish_alert(publisher, own_alert)

    assert victim_browser.next_event("alert")["alert_id"] == victims_alert.alert_id
    assert browser.next_event("alert")["alert_id"] == own_alert.alert_id
    assert browser.received_now("alert") == []
