"""The notifier lives through a RabbitMQ restart (rabbitmqctl stop_app/start_app).

This disturbs every other test run on the machine: keep it rare and run it alone.
"""

from __future__ import annotations

import subprocess
from contextlib import closing

from common.amqp import ConfirmingPublisher
from common.topology import CHAT_MESSAGE_KEY
from tests.notifier import conftest as notifier_fixtures
from tests.notifier.conftest import QueueTap, make_alert, new_user_id, publish_alert, token_for
from tests.processes import wait_for_port

# The notifier's own fixtures: a real notifier process and Socket.IO clients.
notifier = notifier_fixtures.notifier
connect_browser = notifier_fixtures.connect_browser

# The bridge backs off up to 15 s between attempts; RabbitMQ takes a few seconds to start.
AFTER_RESTART_TIMEOUT_SECONDS = 60


def rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=120)


def restart_rabbitmq(settings) -> None:
    """Stop and start the RabbitMQ application, then wait for AMQP and STOMP."""
    rabbitmqctl("stop_app")
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")
    wait_for_port(5672, timeout=60)
    wait_for_port(settings.stomp_port, timeout=60)


def test_the_bridge_survives_a_rabbitmq_restart_without_losing_an_alert(settings, connect_browser):
    owner = new_user_id()
    browser = connect_browser(token_for(settings, owner))
    before = make_alert(owner)
    with closing(ConfirmingPublisher(settings)) as publisher:
        publish_alert(publisher, before)
    assert browser.next_event("alert")["alert_id"] == before.alert_id

    restart_rabbitmq(settings)
    # Published at once after the restart, probably before the bridge is back:
    # the durable queue keeps it until the bridge subscribes again.
    during_reconnect = make_alert(owner)
    with closing(ConfirmingPublisher(settings)) as publisher:
        publish_alert(publisher, during_reconnect)

    received = browser.next_event("alert", timeout=AFTER_RESTART_TIMEOUT_SECONDS)
    assert received["alert_id"] == during_reconnect.alert_id

    # Chat publishing found its way back too.
    tap = QueueTap(settings, "ems.chat", CHAT_MESSAGE_KEY)
    try:
        ack = browser.client.call("chat:send", {"client_message_id": "after-restart", "body": "hi"},
                                  timeout=AFTER_RESTART_TIMEOUT_SECONDS)
        assert ack == {"ok": True}
        _, message = tap.next_where(lambda key, m: m["sender"]["id"] == owner)
        assert message["payload"]["client_message_id"] == "after-restart"
    finally:
        tap.close()
