"""Fixtures for the notifier: a real notifier process, tokens, Socket.IO clients, RabbitMQ."""

from __future__ import annotations

import dataclasses
import json
import queue
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pika
import pytest
import socketio

from common.amqp import ConfirmingPublisher, connect
from common.auth import Identity, mint_access_token
from common.messages import Alert
from common.topology import ALERTS_EXCHANGE, CHAT_EXCHANGE, alert_routing_key
from tests.isolation import own_vhost
from tests.processes import ServiceProcess, free_port, python_module, wait_for_port

EVENT_TIMEOUT_SECONDS = 5


@pytest.fixture(scope="session")
def settings(settings):
    """Return the run's settings on a virtual host of the notifier tests' own.

    Their notifiers report which administrators are connected to `support.inbound`;
    on the run's vhost those reports would reach the support tests' consumer and
    keep an administrator "online" there for up to 45 s after the test.
    """
    with own_vhost(f"notifier-{secrets.token_hex(3)}") as amqp_url:
        yield dataclasses.replace(settings, amqp_url=amqp_url)


def notifier_process(settings, port: int, name: str) -> ServiceProcess:
    """Return a notifier process on `port`, on the notifier tests' virtual host."""
    return ServiceProcess(python_module("notifier"), name=name,
                          env={"EMS_NOTIFIER_PORT": str(port), "EMS_AMQP_URL": settings.amqp_url})


@pytest.fixture(scope="session")
def notifier(settings):
    """Run one real notifier process for the session; yield its URL."""
    port = free_port()
    process = notifier_process(settings, port, "notifier-tests")
    with process:
        wait_for_port(port, process=process.process)
        process.url = f"http://127.0.0.1:{port}"
        yield process


def new_user_id() -> int:
    """Return a user id no other test of this run uses."""
    return secrets.randbelow(10**9) + 10**6


def token_for(settings, user_id: int, role: str = "client", expires: timedelta | None = None) -> str:
    """Return an access token as the portal would issue it."""
    return mint_access_token(settings, Identity(user_id, role, f"user {user_id}"), expires)


@dataclass
class Browser:
    """A Socket.IO client that records every event it receives."""

    client: socketio.Client
    events: queue.Queue = field(default_factory=queue.Queue)

    def received_now(self, name: str) -> list:
        """Return the data of the events called `name` received so far, without waiting."""
        found = []
        while not self.events.empty():
            event, data = self.events.get_nowait()
            if event == name:
                found.append(data)
        return found

    def next_event(self, name: str, timeout: float = EVENT_TIMEOUT_SECONDS):
        """Return the data of the next event called `name`, skipping others."""
        while True:
            event, data = self.events.get(timeout=timeout)
            if event == name:
                return data


@pytest.fixture
def connect_browser(notifier):
    """Return a function that connects a Socket.IO client (disconnected after the test)."""
    browsers = []

    def open_socket(token: str | None = None, cookie: str | None = None,
                    origin: str | None = None) -> Browser:
        # Without `origin` the client sends its own, the notifier's (a same-origin page).
        options = {"origin": origin} if origin else {}
        browser = Browser(socketio.Client(reconnection=False, websocket_extra_options=options))
        browser.client.on("*", lambda event, data=None: browser.events.put((event, data)))
        refusals = []
        browser.client.on("connect_error", refusals.append)
        headers = {"Cookie": f"access_token_cookie={cookie}"} if cookie else {}
        browsers.append(browser)
        try:
            browser.client.connect(notifier.url, socketio_path="/socket.io",
                                   transports=["websocket"], auth={"token": token} if token else None,
                                   headers=headers, wait_timeout=EVENT_TIMEOUT_SECONDS)
        except socketio.exceptions.ConnectionError as error:
            # The server's reason arrives in the connect_error event, not in the exception.
            raise socketio.exceptions.ConnectionError(f"{error}: {refusals}") from error
        return browser

    yield open_socket
    for browser in browsers:
        browser.client.disconnect()


@pytest.fixture(scope="session")
def publisher(settings):
    """Return a confirming publisher on this run's virtual host."""
    publisher = ConfirmingPublisher(settings)
    yield publisher
    publisher.close()


def make_alert(user_id: int, **overrides) -> Alert:
    """Return an over-consumption alert for a device of `user_id`."""
    values = dict(alert_id=secrets.randbelow(10**9), user_id=user_id, device_id=str(uuid.uuid4()),
                  device_name="Heat pump", hour_start="2026-11-26T17:00:00+00:00",
                  kwh=3.25, limit_kwh=2.5)
    values.update(overrides)
    return Alert(**values)


def publish_alert(publisher: ConfirmingPublisher, alert: Alert) -> None:
    """Publish an alert exactly as the monitor does."""
    publisher.publish(ALERTS_EXCHANGE, alert_routing_key(alert.user_id), alert.to_json())


class QueueTap:
    """A private queue bound to an exchange, read from a thread of its own."""

    def __init__(self, settings, exchange: str, binding: str):
        self.messages: queue.Queue = queue.Queue()
        self._connection = connect(settings)
        self._channel = self._connection.channel()
        declared = self._channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        self._channel.queue_bind(declared.method.queue, exchange, routing_key=binding)
        self._channel.basic_consume(declared.method.queue, self._on_message, auto_ack=True)
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _on_message(self, channel, method, properties, body):
        self.messages.put((method.routing_key, json.loads(body)))

    def _consume(self):
        try:
            self._channel.start_consuming()
        except pika.exceptions.AMQPError:
            pass

    def next_where(self, predicate, timeout: float = EVENT_TIMEOUT_SECONDS):
        """Return the next (routing key, message) matching `predicate`."""
        while True:
            routing_key, message = self.messages.get(timeout=timeout)
            if predicate(routing_key, message):
                return routing_key, message

    def close(self):
        self._connection.add_callback_threadsafe(self._channel.stop_consuming)
        self._thread.join(5)
        self._connection.close()


@pytest.fixture
def chat_tap(settings, notifier):
    """Return a tap on everything the notifier publishes to ems.chat."""
    tap = QueueTap(settings, CHAT_EXCHANGE, "inbound.#")
    yield tap
    tap.close()
