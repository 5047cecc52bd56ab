"""The alert bridge reconnects by itself when its STOMP connection is cut.

A TCP proxy of the test stands between the notifier and RabbitMQ's STOMP port,
so the outage touches nobody else (the full broker restart is in tests/outage/).
The notifier gets a virtual host of its own: no other notifier of the run may
consume the alert in its place while its bridge is cut off.
"""

from __future__ import annotations

import dataclasses
import secrets
from contextlib import closing

import pytest

from common.amqp import ConfirmingPublisher
from tests.isolation import own_vhost
from tests.notifier.conftest import Browser, make_alert, new_user_id, publish_alert, token_for
from tests.processes import ServiceProcess, TcpProxy, free_port, python_module, wait_for_port

# The bridge backs off 0.5, 1, 2, 4 s… between attempts while the proxy is down.
RECONNECT_TIMEOUT_SECONDS = 20


@pytest.fixture(scope="module")
def lone_settings(settings):
    """Return this run's settings on a virtual host that only this module's notifier uses."""
    with own_vhost(f"bridge-{secrets.token_hex(3)}") as amqp_url:
        yield dataclasses.replace(settings, amqp_url=amqp_url)


@pytest.fixture(scope="module")
def lone_publisher(lone_settings):
    """Return a publisher on the module's virtual host."""
    with closing(ConfirmingPublisher(lone_settings)) as publisher:
        yield publisher


@pytest.fixture(scope="module")
def stomp_proxy(settings):
    """Return a proxy to RabbitMQ's STOMP port that the test can cut."""
    with TcpProxy(settings.stomp_port) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def proxied_notifier(lone_settings, stomp_proxy):
    """Run a notifier whose STOMP connection goes through the proxy; yield its URL."""
    port = free_port()
    env = {"EMS_NOTIFIER_PORT": str(port), "EMS_STOMP_PORT": str(stomp_proxy.port),
           "EMS_AMQP_URL": lone_settings.amqp_url}
    with ServiceProcess(python_module("notifier"), env=env, name="notifier-proxied") as process:
        wait_for_port(port, process=process.process)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def owner_socket(settings, proxied_notifier):
    """Connect one client to the proxied notifier; return (user id, browser)."""
    import socketio

    owner = new_user_id()
    browser = Browser(socketio.Client(reconnection=False))
    browser.client.on("*", lambda event, data=None: browser.events.put((event, data)))
    browser.client.connect(proxied_notifier, transports=["websocket"],
                           auth={"token": token_for(settings, owner)}, wait_timeout=5)
    yield owner, browser
    browser.client.disconnect()


def test_an_alert_published_while_stomp_is_cut_arrives_after_the_bridge_reconnects(
        owner_socket, lone_publisher, stomp_proxy):
    owner, browser = owner_socket
    first = make_alert(owner)
    publish_alert(lone_publisher, first)
    assert browser.next_event("alert")["alert_id"] == first.alert_id

    stomp_proxy.stop()
    during_outage = make_alert(owner)
    publish_alert(lone_publisher, during_outage)
    stomp_proxy.start()

    # The first alert's ack may have been cut on its way: at-least-once delivery
    # can bring it again (browsers drop an alert id they have shown).
    received = browser.next_event("alert", timeout=RECONNECT_TIMEOUT_SECONDS)
    while received["alert_id"] == first.alert_id:
        received = browser.next_event("alert", timeout=RECONNECT_TIMEOUT_SECONDS)
    assert received["alert_id"] == during_outage.alert_id
