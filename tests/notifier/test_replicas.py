"""Two notifier replicas share rooms through the Socket.IO message queue on RabbitMQ."""

from __future__ import annotations

import time

import pytest
import socketio

from common.realtime import ADMINS_ROOM, socketio_emitter, user_room
from tests.notifier.conftest import (
    Browser,
    make_alert,
    new_user_id,
    notifier_process,
    publish_alert,
    token_for,
)
from tests.processes import free_port, wait_for, wait_for_port

ALERTS = 12


@pytest.fixture(scope="module")
def replicas(settings):
    """Run two notifier replicas of this module's own, started together; yield their URLs."""
    ports = [free_port(), free_port()]
    processes = [notifier_process(settings, port, f"notifier-replica-{n}").start()
                 for n, port in enumerate(ports, start=1)]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_for_port(port, process=process.process)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.stop()


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
        settings, replicas, socket_on, publisher):
    owner = new_user_id()
    owner_socket = socket_on(replicas[1], owner)
    admin_socket = socket_on(replicas[0], new_user_id(), role="admin")
    alerts = [make_alert(owner) for _ in range(ALERTS)]
    # A replica takes sockets a moment before its message-queue listener is bound: wait until
    # both hear a broadcast, or alerts emitted by the others in that moment never reach them.
    emitter = socketio_emitter(settings)

    def both_listening() -> bool:
        emitter.emit("probe", {}, to=[user_room(owner), ADMINS_ROOM])
        time.sleep(0.2)
        return bool(owner_socket.received_now("probe")) & bool(admin_socket.received_now("probe"))

    wait_for(both_listening, 10, "both replicas hear the Socket.IO message queue")

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
