"""Two notifier replicas share rooms through the Socket.IO message queue on RabbitMQ."""

from __future__ import annotations

import pytest
import socketio

from tests.notifier.conftest import (
    Browser,
    make_alert,
    new_user_id,
    notifier_process,
    publish_alert,
    token_for,
)
from tests.processes import free_port, wait_for_port

ALERTS = 12


@pytest.fixture(scope="module")
def second_notifier(settings, notifier):
    """Run a second notifier beside the session's one; yield its URL."""
    port = free_port()
    with notifier_process(settings, port, "notifier-replica-2") as process:
        wait_for_port(port, process=process.process)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def socket_on(settings):
    """Return a function that connects a client to a given notifier replica."""
    browsers = []

    def open_socket(url: str, user_id: int, role: str = "client") -> Browser:
        browser = Browser(socketio.Client(reconnection=False))
        browser.client.on("*", lambda event, data=None: browser.events.put((event, data)))
        browser.client.connect(url, transports=["websocket"],
                               auth={"token": token_for(settings, user_id, role)}, wait_timeout=5)
        browsers.append(browser)
        return browser

    yield open_socket
    for browser in browsers:
        browser.client.disconnect()


def test_alerts_reach_sockets_on_every_replica_whichever_replica_consumes_them(
        notifier, second_notifier, socket_on, publisher):
    owner = new_user_id()
    owner_socket = socket_on(notifier.url, owner)
    admin_socket = socket_on(second_notifier, new_user_id(), role="admin")
    alerts = [make_alert(owner) for _ in range(ALERTS)]

    # Both replicas consume notifier.alerts, so each takes its share of these.
    for alert in alerts:
        publish_alert(publisher, alert)

    expected = {alert.alert_id for alert in alerts}
    assert {owner_socket.next_event("alert")["alert_id"] for _ in alerts} == expected
    received_by_admin = set()
    while received_by_admin != expected:
        alert_id = admin_socket.next_event("alert")["alert_id"]
        # The admins' room also hears alerts of other tests' users.
        if alert_id in expected:
            received_by_admin.add(alert_id)
