"""Least privilege on the broker: each service connects as its own user, may do its own work
and nothing else, and chat that does not come from the notifier's user never reaches support.

The users are made on a virtual host of this module's own, by the same step as
`python -m migrations upgrade` (migrations/broker.py) with the permissions of
common/broker_users.py; their names carry a prefix of their own, as users are
global on the broker, and are deleted afterwards.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from types import SimpleNamespace

import pika
import pika.exceptions
import pytest

from common.amqp import connection_parameters
from common.auth import Identity
from common.broker_users import SERVICES, password_setting, user_name
from common.settings import load_settings
from common.topology import (
    ALERTS_EXCHANGE,
    CHAT_EXCHANGE,
    CHAT_MESSAGE_KEY,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERS_QUEUE,
    EVENTS_EXCHANGE,
    MONITOR_EVENTS_QUEUE,
    READINGS_EXCHANGE,
    READINGS_QUEUE,
    SUPPORT_EVENTS_QUEUE,
    SUPPORT_INBOUND_QUEUE,
    alert_routing_key,
    ingest_queue,
    notifier_sessions_queue,
)
from migrations.broker import upgrade_broker
from notifier.chat import chat_message
from tests.isolation import environment, own_vhost, rabbitmqctl
from tests.processes import ServiceProcess, free_port, python_module, wait_for_port

ACCESS_REFUSED = 403
PRECONDITION_FAILED = 406
WAIT_SECONDS = 20


@pytest.fixture(scope="module")
def broker(migrated):
    """Yield the administrator's and every service's settings on a vhost with the service users."""
    label = secrets.token_hex(4)
    prefix = f"ems-test-{label}-"
    passwords = {service: secrets.token_urlsafe(16) for service in SERVICES}
    with own_vhost(f"{label}-users") as admin_url:
        variables = {
            "EMS_AMQP_URL": admin_url,
            "EMS_AMQP_SERVICE_USERS": "true",
            "EMS_AMQP_USER_PREFIX": prefix,
            **{f"EMS_{password_setting(service)}": password for service, password in passwords.items()},
        }
        try:
            with environment(variables):
                admin = load_settings()
                upgrade_broker(admin)  # the topology, then the users, as `make migrate` does
                services = {service: load_settings(service=service) for service in SERVICES}
            yield SimpleNamespace(admin=admin, services=services, env=variables,
                                  user=lambda service: user_name(prefix, service))
        finally:
            for service in SERVICES:
                try:
                    rabbitmqctl("delete_user", user_name(prefix, service))
                except subprocess.CalledProcessError:
                    print(f"could not delete broker user {user_name(prefix, service)}")


def open_channel(settings):
    """Open a confirming channel on a connection of its own as `settings`' user."""
    connection = pika.BlockingConnection(connection_parameters(settings))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def publish(settings, exchange: str, routing_key: str, body: bytes = b"{}", **properties) -> None:
    """Publish one message as `settings`' user and wait for the broker's confirm."""
    connection, channel = open_channel(settings)
    try:
        channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(**properties))
    finally:
        if connection.is_open:
            connection.close()


def take_one(settings, queue: str) -> None:
    """Take one message (if any) from `queue` as `settings`' user, giving it back."""
    connection, channel = open_channel(settings)
    try:
        method, _, _ = channel.basic_get(queue)
        if method is not None:
            channel.basic_nack(method.delivery_tag, requeue=True)
    finally:
        if connection.is_open:
            connection.close()


def declare_queue(settings, queue: str, exclusive: bool = False) -> None:
    """Declare a queue of one's own (bound to user events when exclusive) as `settings`' user."""
    connection, channel = open_channel(settings)
    try:
        channel.queue_declare(queue, durable=not exclusive, exclusive=exclusive)
        if exclusive:
            channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="user.*")
    finally:
        if connection.is_open:
            connection.close()


def depth(settings, queue: str) -> int:
    """Return how many messages `queue` holds (a passive declare)."""
    connection, channel = open_channel(settings)
    try:
        return channel.queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


ALLOWED_AND_REFUSED = [
    # (service, what it tries, allowed?)
    ("simulator", lambda s: publish(s, READINGS_EXCHANGE, "reading"), True),
    ("simulator", lambda s: publish(s, CHAT_EXCHANGE, CHAT_MESSAGE_KEY), False),
    ("web", lambda s: publish(s, EVENTS_EXCHANGE, "user.created"), True),
    ("web", lambda s: publish(s, READINGS_EXCHANGE, "reading"), False),
    ("balancer", lambda s: take_one(s, READINGS_QUEUE), True),
    ("balancer", lambda s: publish(s, ALERTS_EXCHANGE, alert_routing_key(1)), False),
    ("monitor", lambda s: take_one(s, ingest_queue(1)), True),
    ("monitor", lambda s: take_one(s, MONITOR_EVENTS_QUEUE), True),
    ("monitor", lambda s: publish(s, CHAT_EXCHANGE, CHAT_MESSAGE_KEY), False),
    ("monitor", lambda s: declare_queue(s, "monitor.own"), False),
    ("notifier", lambda s: declare_queue(s, notifier_sessions_queue("host-1-abc123"), exclusive=True), True),
    ("notifier", lambda s: take_one(s, SUPPORT_INBOUND_QUEUE), False),
    ("notifier", lambda s: take_one(s, SUPPORT_EVENTS_QUEUE), False),
    ("notifier", lambda s: publish(s, READINGS_EXCHANGE, "reading"), False),
    ("support", lambda s: take_one(s, SUPPORT_INBOUND_QUEUE), True),
    ("support", lambda s: take_one(s, SUPPORT_EVENTS_QUEUE), True),
    ("support", lambda s: take_one(s, READINGS_QUEUE), False),
    ("support", lambda s: publish(s, EVENTS_EXCHANGE, "user.deleted"), False),
]


@pytest.mark.parametrize(("service", "action", "allowed"), ALLOWED_AND_REFUSED,
                         ids=[f"{service}-{n}" for n, (service, _, _) in enumerate(ALLOWED_AND_REFUSED)])
def test_each_service_user_may_do_its_own_work_and_nothing_else(broker, service, action, allowed):
    settings = broker.services[service]
    if allowed:
        action(settings)
    else:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            action(settings)
        assert refused.value.reply_code == ACCESS_REFUSED


def test_chat_forged_with_the_notifiers_user_id_is_refused_by_the_broker(broker):
    before = depth(broker.admin, SUPPORT_INBOUND_QUEUE)
    forged = chat_message(Identity(1, "admin", "Mallory"), {"body": "forged", "client_message_id": "f1"},
                          "2026-11-26T12:00:00+00:00")
    # The monitor may publish alerts, but not in the notifier's name.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        publish(broker.services["monitor"], ALERTS_EXCHANGE, alert_routing_key(1), forged,
                user_id=broker.user("notifier"))
    assert refused.value.reply_code == PRECONDITION_FAILED
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        publish(broker.services["monitor"], CHAT_EXCHANGE, CHAT_MESSAGE_KEY, forged,
                user_id=broker.user("notifier"))
    # Its own name on its own exchange passes: what was refused is the borrowed name.
    publish(broker.services["monitor"], ALERTS_EXCHANGE, alert_routing_key(1), b"{}",
            user_id=broker.user("monitor"))
    assert depth(broker.admin, SUPPORT_INBOUND_QUEUE) == before


@pytest.fixture(scope="module")
def running_as_service_users(broker):
    """Run every broker-facing process as its service's user; yield them by name."""
    port = free_port()
    processes = {
        "notifier": ServiceProcess(python_module("notifier"), {**broker.env, "EMS_NOTIFIER_PORT": str(port)},
                                   name="users notifier"),
        "support_consumer": ServiceProcess(python_module("support", "consumer"), broker.env,
                                           name="users support consumer"),
        "balancer": ServiceProcess(python_module("balancer"), broker.env, name="users balancer"),
        "monitor_1": ServiceProcess(python_module("monitor", "worker", "--replica", "1"), broker.env,
                                    name="users monitor 1"),
        "monitor_events": ServiceProcess(python_module("monitor", "events"), broker.env,
                                         name="users monitor events"),
        "outbox_relay": ServiceProcess(python_module("web", "relay"), broker.env, name="users relay"),
    }
    for process in processes.values():
        process.start()
    try:
        wait_for_port(port, process=processes["notifier"].process)
        yield processes
    finally:
        for process in processes.values():
            process.stop()


def test_every_broker_process_runs_as_its_own_service_user(broker, running_as_service_users):
    notifier = running_as_service_users["notifier"]
    deadline = time.monotonic() + WAIT_SECONDS
    # The alert bridge subscribes over STOMP with the notifier's user once it is up.
    while "stomp.subscribed" not in notifier.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "stomp.subscribed" in notifier.log(), notifier.log()[-2000:]
    time.sleep(2)  # long enough for a refused declare or consume to end a process
    for name, process in running_as_service_users.items():
        assert process.running, f"{name} exited:\n{process.log()[-2000:]}"
        assert "ACCESS_REFUSED" not in process.log(), f"{name}:\n{process.log()[-2000:]}"


def test_support_dead_letters_chat_that_the_notifiers_user_did_not_stamp(broker, running_as_service_users):
    marker = secrets.token_hex(6)
    sender = Identity(int(time.time() * 1000) % 1_000_000_000, "client", "client")

    def message(label: str) -> bytes:
        return chat_message(sender, {"body": f"{marker} {label}", "client_message_id": f"{marker}-{label}"},
                            "2026-11-26T12:00:00+00:00")

    # The notifier's user, but without the stamp (another code path, or its stolen password).
    publish(broker.services["notifier"], CHAT_EXCHANGE, CHAT_MESSAGE_KEY, message("unstamped"))
    # The administrator, under its own name: the broker lets it, support must not believe it.
    publish(broker.admin, CHAT_EXCHANGE, CHAT_MESSAGE_KEY, message("admin"), user_id="guest")
    publish(broker.services["notifier"], CHAT_EXCHANGE, CHAT_MESSAGE_KEY, message("genuine"),
            user_id=broker.user("notifier"))

    reasons = {}
    connection, channel = open_channel(broker.admin)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(reasons) < 2 and time.monotonic() < deadline:
            method, properties, body = channel.basic_get(DEAD_LETTERS_QUEUE, auto_ack=True)
            if method is None:
                time.sleep(0.2)
                continue
            payload = json.loads(body).get("payload", {}) if body.startswith(b"{") else {}
            if str(payload.get("body", "")).startswith(marker):
                reasons[payload["body"].split()[-1]] = properties.headers[DEAD_LETTER_REASON_HEADER]
        # The genuine message is taken and acked; nothing is left behind it.
        while depth(broker.admin, SUPPORT_INBOUND_QUEUE) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # a dead letter of the genuine one, were there any, would be here by now
        while True:
            method, properties, body = channel.basic_get(DEAD_LETTERS_QUEUE, auto_ack=True)
            if method is None:
                break
            assert f"{marker} genuine".encode() not in body, properties.headers
    finally:
        connection.close()
    assert set(reasons) == {"unstamped", "admin"}, running_as_service_users["support_consumer"].log()[-2000:]
    assert all(reason.startswith("forged-sender:") for reason in reasons.values()), reasons
    assert depth(broker.admin, SUPPORT_INBOUND_QUEUE) == 0
    # The genuine message was answered, through the Socket.IO message queue as support's user.
    assert "ACCESS_REFUSED" not in running_as_service_users["support_consumer"].log()


def test_each_swarm_task_holds_its_own_services_broker_password_and_no_administrators():
    import yaml

    from tests.processes import ROOT

    stack = yaml.safe_load((ROOT / "swarm" / "stack.yml").read_text())
    passwords = {f"ems_amqp_password_{service}" for service in SERVICES}
    for name, service in stack["services"].items():
        if "EMS_AMQP_URL_FILE" not in (service.get("environment") or {}):
            continue  # not an EMS process
        held = {secret if isinstance(secret, str) else secret["source"] for secret in service["secrets"]}
        if name == "migrate":
            assert {"ems_amqp_url", *passwords} <= held
            continue
        # The service's kind is the module it runs: `python -m <kind>` or gunicorn '<kind>:create_app()'.
        command = " ".join(service["command"])
        kind = re.search(r"-m (\w+)|(\w+):create_app", command).group(1, 2)
        kind = kind[0] or kind[1]
        assert held & passwords == {f"ems_amqp_password_{kind}"}, name
        assert "ems_amqp_url" not in held, name
    created = (ROOT / "swarm" / "secrets.sh").read_text()
    assert re.search(r"for service in ([\w ]+); do", created).group(1).split() == list(SERVICES)


def test_a_service_without_its_broker_password_refuses_to_start(tmp_path, monkeypatch):
    from common.settings import SettingsError

    secrets_file = tmp_path / ".ems-secrets"
    secrets_file.write_text(f"EMS_JWT_SECRET={secrets.token_urlsafe(48)}\n")
    secrets_file.chmod(0o600)
    monkeypatch.setenv("EMS_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("EMS_AMQP_SERVICE_USERS", "true")
    for service in SERVICES:
        monkeypatch.delenv(f"EMS_{password_setting(service)}", raising=False)
    with pytest.raises(SettingsError, match="no broker password for simulator"):
        load_settings(service="simulator")


def test_an_older_secrets_file_gains_every_services_broker_password_and_keeps_its_jwt_secret(tmp_path,
                                                                                           monkeypatch):
    from common.security import ensure_secrets_file

    secrets_file = tmp_path / ".ems-secrets"
    jwt_secret = secrets.token_urlsafe(48)
    secrets_file.write_text(f"EMS_JWT_SECRET={jwt_secret}")  # no newline at its end
    secrets_file.chmod(0o600)
    assert ensure_secrets_file(secrets_file) is False
    monkeypatch.setenv("EMS_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("EMS_AMQP_SERVICE_USERS", "true")
    monkeypatch.delenv("EMS_AMQP_URL", raising=False)
    monkeypatch.delenv("EMS_JWT_SECRET", raising=False)
    for service in SERVICES:
        monkeypatch.delenv(f"EMS_{password_setting(service)}", raising=False)
    notifier = load_settings(service="notifier")
    assert notifier.jwt_secret == jwt_secret
    assert notifier.amqp_url.startswith("amqp://ems-notifier:")
    assert notifier.amqp_url.endswith("@127.0.0.1:5672/%2F")
    assert list(notifier.amqp_passwords) == ["notifier"]  # a service knows no other's
    assert sorted(load_settings().amqp_passwords) == sorted(SERVICES)
