"""A message that arrives while the database is unreachable is stored once it is back.

The consumer reaches MariaDB through a TCP proxy this test controls, so cutting
the database off disturbs nobody else.
"""

import json
import secrets
import socket
import subprocess
import threading
import uuid
from urllib.parse import quote

import pymysql
import pytest

from common.amqp import ConfirmingPublisher
from common.settings import load_settings
from common.topology import CHAT_EXCHANGE, CHAT_MESSAGE_KEY
from tests.processes import ServiceProcess, python_module
from tests.support.conftest import new_user_id, wait_until

pytestmark = pytest.mark.slow


class TcpProxy:
    """Forward 127.0.0.1:<port> to a target; `cut()` drops every connection and hangs up on new ones."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open = True
        # The listener stays bound throughout, so nobody else can take the port meanwhile.
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.open = False
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self.connections.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def own_vhost(migrated):
    """A RabbitMQ virtual host for this test's consumer only (the session's has its own consumer)."""
    name = f"ems-test-support-outage-{secrets.token_hex(3)}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, timeout=60)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
                   check=True, timeout=60)
    yield f"amqp://guest:guest@127.0.0.1:5672/{quote(name, safe='')}"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=True, timeout=60)


def stored(settings, client_message_id: str) -> list[tuple]:
    connection = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                                 password=settings.db_password, database=settings.database_name("support"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT m.id, m.body FROM messages m WHERE m.client_message_id IN (%s, "
                           "(SELECT CONCAT('reply-to:', id) FROM messages WHERE client_message_id = %s))",
                           (client_message_id, client_message_id))
            return list(cursor.fetchall())
    finally:
        connection.close()


def test_message_sent_while_the_database_is_down_is_stored_once_it_returns(migrated, own_vhost):
    proxy = TcpProxy(migrated.db_port)
    consumer = ServiceProcess(python_module("support", "consumer"), name="support-outage-consumer",
                              env={"EMS_AMQP_URL": own_vhost, "EMS_DB_PORT": str(proxy.port)})
    publisher = ConfirmingPublisher(load_settings(amqp_url=own_vhost))
    with consumer:
        wait_until(lambda: "support.consuming" in consumer.log(), timeout=30, message="the consumer")
        proxy.cut()
        client_message_id = uuid.uuid4().hex
        publisher.publish(CHAT_EXCHANGE, CHAT_MESSAGE_KEY, json.dumps({
            "sender": {"id": new_user_id(), "role": "client", "name": "Dora"},
            "payload": {"client_message_id": client_message_id, "body": "hello while down"},
            "received_at": "2026-11-26T12:00:00+00:00"}).encode())
        wait_until(lambda: "support.database_unavailable" in consumer.log(), timeout=20,
                   message="the consumer noticing the outage")
        assert stored(migrated, client_message_id) == []
        proxy.restore()
        rows = wait_until(lambda: (r := stored(migrated, client_message_id)) and len(r) == 2 and r,
                          timeout=30, message="the message and the bot's answer")
        assert [body for _, body in rows][0] == "hello while down"
        assert consumer.running
    publisher.close()
    proxy.close()
    assert len(stored(migrated, client_message_id)) == 2  # the message and one bot answer, no more
