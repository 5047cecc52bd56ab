"""Fixtures for support: the real notifier, support app and support consumer, a fake
monitor API, and chat users driving real Socket.IO clients."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
import pymysql
import pytest
import requests
import socketio

from common.amqp import connect
from common.auth import Identity, decode_access_token, mint_access_token
from common.messages import ChatMessage
from common.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_SOURCE_HEADER,
    SUPPORT_INBOUND_QUEUE,
)
from tests.isolation import own_vhost
from tests.processes import ServiceProcess, free_port, python_module, wait_for_port

WAIT_SECONDS = 8


def wait_until(condition, timeout: float = WAIT_SECONDS, message: str = "condition"):
    """Poll `condition` until it returns something truthy; return it or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet handler of the local fake servers that answers JSON."""

    def log_message(self, *args):
        pass

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeMonitor(ThreadingHTTPServer):
    """The monitor API's summary endpoint: answers with the devices of the token's user."""

    daemon_threads = True

    def __init__(self, settings):
        super().__init__(("127.0.0.1", 0), SummaryHandler)
        self.settings = settings
        self.devices: dict[int, list[dict]] = {}
        self.callers: list[Identity] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class SummaryHandler(JsonHandler):
    def do_GET(self):
        server: FakeMonitor = self.server
        if not self.path.startswith("/api/monitor/summary"):
            return self._send(404, {"error": "not found"})
        try:
            identity = decode_access_token(self.headers.get("Authorization", "")[7:], server.settings)
        except Exception:  # noqa: BLE001 - any bad token is a 401, as in the real API
            return self._send(401, {"error": "invalid token"})
        server.callers.append(identity)
        self._send(200, {"devices": server.devices.get(identity.user_id, [])})


@pytest.fixture(scope="session")
def fake_monitor(settings):
    server = FakeMonitor(settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class FakeOpenAI(ThreadingHTTPServer):
    """A chat-completions endpoint whose next answer the test chooses."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), CompletionHandler)
        self.mode = "success"
        self.requests: list[dict] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class CompletionHandler(JsonHandler):
    def do_POST(self):
        server: FakeOpenAI = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"path": self.path, "body": body,
                                "authorization": self.headers.get("Authorization")})
        if server.mode == "timeout":
            server.release.wait(30)  # longer than the client's timeout; released at teardown
            return
        if server.mode == "error":
            return self._send(500, {"error": {"message": "boom", "type": "server_error"}})
        if server.mode == "malformed":
            return self._send(200, {"id": "x", "object": "chat.completion", "choices": []})
        if server.mode == "empty":
            return self._send(200, completion(""))
        return self._send(200, completion("Your heater used 4.2 kWh today."))


def completion(content):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.fixture()
def fake_llm():
    """Return a local server speaking the OpenAI chat-completions protocol."""
    fake = FakeOpenAI()
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    fake.shutdown()
    fake.server_close()


@pytest.fixture(scope="session")
def chat_services(migrated, fake_monitor):
    """Run the real notifier, support app and support consumer for this session."""
    notifier_port, support_port = free_port(), free_port()
    env = {"EMS_NOTIFIER_PORT": str(notifier_port), "EMS_SUPPORT_PORT": str(support_port),
           "EMS_MONITOR_API_URL": fake_monitor.url, "EMS_LLM_BASE_URL": "", "EMS_LLM_MODEL": ""}
    processes = [
        ServiceProcess(python_module("notifier"), env=env, name="support-tests-notifier"),
        ServiceProcess(python_module("gunicorn", "--bind", f"127.0.0.1:{support_port}", "--workers", "1",
                                     "--threads", "4", "support:create_app()"),
                       env=env, name="support-tests-app"),
        ServiceProcess(python_module("support", "consumer"), env=env, name="support-tests-consumer"),
    ]
    for process in processes:
        process.start()
    try:
        wait_for_port(notifier_port, process=processes[0].process)
        wait_for_port(support_port, process=processes[1].process)
        # The consumer is ready when it has seeded the rules and declared its queue.
        wait_until(lambda: "support.consuming" in processes[2].log() or not processes[2].running,
                   timeout=30, message="the support consumer")
        assert processes[2].running, processes[2].log()
        yield {"notifier": f"http://127.0.0.1:{notifier_port}",
               "support": f"http://127.0.0.1:{support_port}", "processes": processes}
    finally:
        for process in processes:
            process.stop()


def new_user_id() -> int:
    """Return a user id no other test of this run uses."""
    return secrets.randbelow(10**9) + 10**6


def client_message(client_id: int, client_message_id: str, body: str = "hello") -> bytes:
    """Return a client's chat message as the notifier publishes it to ems.chat."""
    return ChatMessage(Identity(client_id, "client", f"client {client_id}"),
                       {"client_message_id": client_message_id, "body": body},
                       received_at=datetime(2026, 11, 26, 12)).to_json()


def support_database(settings):
    """Open a plain connection to this run's support database (for what tests check)."""
    return pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                           password=settings.db_password, database=settings.database_name("support"),
                           autocommit=True)


def conversation_roles(settings, client_ids: list[int]) -> dict[int, list[tuple[str, str | None]]]:
    """Return each client's stored messages, oldest first: (sender role, client message id)."""
    connection = support_database(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT c.client_id, m.sender_role, m.client_message_id FROM messages m "
                           "JOIN conversations c ON c.id = m.conversation_id "
                           "WHERE c.client_id IN %s ORDER BY m.id", (tuple(client_ids),))
            conversations = {client_id: [] for client_id in client_ids}
            for client_id, role, client_message_id in cursor.fetchall():
                conversations[client_id].append((role, client_message_id))
            return conversations
    finally:
        connection.close()


def assert_stored_once_in_order(conversations: dict, sends: list[tuple[int, str]]) -> None:
    """Assert each client's messages are stored once, in the order sent, each followed by one answer."""
    for client, stored in conversations.items():
        expected = [client_message_id for sender, client_message_id in sends if sender == client]
        assert [client_message_id for role, client_message_id in stored if role == "client"] == expected
        assert [role for role, _ in stored] == ["client", "bot"] * len(expected)


class ChatUser:
    """A signed-in user with a live Socket.IO connection to the real notifier."""

    def __init__(self, services, settings, role: str, user_id: int | None = None):
        self.identity = Identity(user_id or new_user_id(), role, f"{role} {secrets.token_hex(2)}")
        self.token = mint_access_token(settings, self.identity)
        self.services = services
        self.events: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.socket = socketio.Client(reconnection=False)
        self.socket.on("*", self._record)
        self.socket.connect(services["notifier"], socketio_path="/socket.io", transports=["websocket"],
                            auth={"token": self.token}, wait_timeout=10)

    def _record(self, event, data=None):
        with self._lock:
            self.events.append((event, data))

    @property
    def id(self) -> int:
        return self.identity.user_id

    def received(self, event: str, **fields) -> list[dict]:
        """Return the received `event`s whose data has all of `fields`."""
        with self._lock:
            return [data for name, data in self.events
                    if name == event and all(data.get(k) == v for k, v in fields.items())]

    def wait_for(self, event: str, **fields) -> dict:
        """Wait for an `event` with `fields` and return its data."""
        return wait_until(lambda: self.received(event, **fields), message=f"{event} {fields}")[-1]

    def emit(self, event: str, payload: dict) -> dict:
        """Emit a chat event and return the notifier's acknowledgement."""
        return self.socket.call(event, payload, timeout=10)

    def send(self, body: str, client_message_id: str | None = None, **extra) -> str:
        """Send a chat message (acknowledged by the broker); return its client id."""
        client_message_id = client_message_id or uuid.uuid4().hex
        ack = self.emit("chat:send", {"client_message_id": client_message_id, "body": body, **extra})
        assert ack == {"ok": True}, ack
        return client_message_id

    def http(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the support app with this user's token."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.services["support"] + path, timeout=10, headers=headers,
                                **kwargs)

    def close(self):
        if self.socket.connected:
            self.socket.disconnect()


@pytest.fixture
def users(chat_services, settings):
    """Return a factory of connected chat users (disconnected after the test)."""
    created: list[ChatUser] = []

    def make(role: str = "client", user_id: int | None = None) -> ChatUser:
        user = ChatUser(chat_services, settings, role, user_id)
        created.append(user)
        return user

    yield make
    for user in created:
        user.close()


@pytest.fixture
def dead_letter_copies(settings):
    """Return a function that returns every support dead letter seen so far: [(headers, body)].

    A private queue bound to the dead-letter exchange gets copies, so nobody else's
    dead letters are taken away, and each dead-lettering shows up once.
    """
    connection = connect(settings)
    channel = connection.channel()
    private = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(private, DEAD_LETTER_EXCHANGE, routing_key=SUPPORT_INBOUND_QUEUE + ".#")
    seen: list[tuple[dict, bytes]] = []

    def collected() -> list[tuple[dict, bytes]]:
        while True:
            method, properties, body = channel.basic_get(private, auto_ack=True)
            if method is None:
                return seen
            seen.append((properties.headers or {}, body))

    yield collected
    try:
        connection.close()
    except pika.exceptions.AMQPError:
        pass


@pytest.fixture
def dead_letters(dead_letter_copies):
    """Return a function that waits for a support dead letter containing a marker; return its reason."""
    def find(marker: str) -> str:
        headers = wait_until(lambda: next((headers for headers, body in dead_letter_copies()
                                           if marker.encode() in body), None),
                             message=f"a dead letter containing {marker}")
        assert headers[DEAD_LETTER_SOURCE_HEADER] == SUPPORT_INBOUND_QUEUE
        return headers[DEAD_LETTER_REASON_HEADER]

    return find


@pytest.fixture(scope="session")
def publish_chat(migrated):
    """Return a function that publishes a raw message to ems.chat, as the notifier would."""
    from common.amqp import CONNECTION_ERRORS, ConfirmingPublisher
    from common.topology import CHAT_EXCHANGE

    publisher = ConfirmingPublisher(migrated)

    def publish(routing_key: str, message: dict | bytes) -> None:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        try:
            publisher.publish(CHAT_EXCHANGE, routing_key, body)
        except CONNECTION_ERRORS:
            # Idle between tests past its heartbeats on a busy machine, the broker dropped it;
            # `publish` closed it, so this one opens a new connection.
            publisher.publish(CHAT_EXCHANGE, routing_key, body)

    yield publish
    publisher.close()



@pytest.fixture
def support_vhost(migrated):
    """A RabbitMQ virtual host for one test's own consumer (the session's has its own consumer)."""
    with own_vhost(f"support-{secrets.token_hex(3)}") as amqp_url:
        yield amqp_url
