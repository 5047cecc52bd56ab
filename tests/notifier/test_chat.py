"""Chat events and admin presence travel from sockets to ems.chat with the verified identity."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from common.topology import CHAT_MESSAGE_KEY, CHAT_PRESENCE_KEY, CHAT_READ_KEY, CHAT_TYPING_KEY
from tests.notifier.conftest import new_user_id, token_for

ACK_TIMEOUT_SECONDS = 5


def from_user(user_id):
    """Match chat messages sent by `user_id`."""
    return lambda key, message: message.get("sender", {}).get("id") == user_id


def test_a_chat_message_is_published_with_the_verified_sender(settings, connect_browser, chat_tap):
    client = new_user_id()
    browser = connect_browser(token_for(settings, client))
    payload = {"client_message_id": "m-1", "body": "My heater is on all night"}

    ack = browser.client.call("chat:send", payload, timeout=ACK_TIMEOUT_SECONDS)

    assert ack == {"ok": True}
    routing_key, message = chat_tap.next_where(from_user(client))
    assert routing_key == CHAT_MESSAGE_KEY
    assert message["sender"] == {"id": client, "role": "client", "name": f"user {client}"}
    assert message["payload"] == payload
    assert datetime.fromisoformat(message["received_at"]).utcoffset().total_seconds() == 0


def test_a_payload_naming_another_user_does_not_change_the_sender(settings, connect_browser,
                                                                  chat_tap):
    client, victim = new_user_id(), new_user_id()
    browser = connect_browser(token_for(settings, client))
    forged = {"client_message_id": "m-2", "body": "hi",
              "sender": {"id": victim, "role": "admin", "name": "Admin"}, "user_id": victim}

    assert browser.client.call("chat:send", forged, timeout=ACK_TIMEOUT_SECONDS) == {"ok": True}

    _, message = chat_tap.next_where(lambda key, m: m["payload"].get("client_message_id") == "m-2")
    assert message["sender"] == {"id": client, "role": "client", "name": f"user {client}"}


def test_typing_and_read_receipts_are_published(settings, connect_browser, chat_tap):
    admin = new_user_id()
    browser = connect_browser(token_for(settings, admin, role="admin"))

    browser.client.call("chat:typing", {"conversation_id": 4}, timeout=ACK_TIMEOUT_SECONDS)
    browser.client.call("chat:read", {"conversation_id": 4, "message_id": 9},
                        timeout=ACK_TIMEOUT_SECONDS)

    chat_events = lambda key, m: key != CHAT_PRESENCE_KEY and from_user(admin)(key, m)  # noqa: E731
    typing = chat_tap.next_where(chat_events)
    read = chat_tap.next_where(chat_events)
    assert typing == (CHAT_TYPING_KEY, {**typing[1], "payload": {"conversation_id": 4}})
    assert read[0] == CHAT_READ_KEY
    assert read[1]["payload"] == {"conversation_id": 4, "message_id": 9}
    assert read[1]["sender"]["role"] == "admin"


def test_a_payload_that_is_not_an_object_is_refused(settings, connect_browser, chat_tap):
    browser = connect_browser(token_for(settings, new_user_id()))

    ack = browser.client.call("chat:send", "just a string", timeout=ACK_TIMEOUT_SECONDS)

    assert ack["ok"] is False
    assert "object" in ack["error"]


def test_a_long_message_in_four_byte_characters_is_forwarded(settings, connect_browser):
    browser = connect_browser(token_for(settings, new_user_id()))

    ack = browser.client.call("chat:send", {"client_message_id": "m-5", "body": "\U0001F525" * 2000},
                              timeout=ACK_TIMEOUT_SECONDS)

    assert ack == {"ok": True}


def test_an_oversized_payload_is_refused(settings, connect_browser):
    browser = connect_browser(token_for(settings, new_user_id()))

    ack = browser.client.call("chat:send", {"client_message_id": "m-3", "body": "x" * 11_000},
                              timeout=ACK_TIMEOUT_SECONDS)

    assert ack["ok"] is False
    assert "exceeds" in ack["error"]


def test_presence_follows_the_connected_admins(settings, connect_browser, chat_tap):
    admin = new_user_id()
    is_presence = lambda key, message: key == CHAT_PRESENCE_KEY  # noqa: E731

    browser = connect_browser(token_for(settings, admin, role="admin"))
    _, arrived = chat_tap.next_where(lambda k, m: is_presence(k, m) and admin in m["admin_ids"])
    browser.client.disconnect()
    _, left = chat_tap.next_where(lambda k, m: is_presence(k, m) and admin not in m["admin_ids"]
                                  and m["instance"] == arrived["instance"])

    assert arrived["instance"]
    assert datetime.fromisoformat(left["at"]) >= datetime.fromisoformat(arrived["at"])


def test_a_client_is_not_reported_as_a_present_admin(settings, connect_browser, chat_tap):
    client, admin = new_user_id(), new_user_id()
    connect_browser(token_for(settings, client))
    connect_browser(token_for(settings, admin, role="admin"))

    _, report = chat_tap.next_where(lambda k, m: k == CHAT_PRESENCE_KEY and admin in m["admin_ids"])

    assert client not in report["admin_ids"]


def test_chat_events_stop_when_the_token_expires(settings, connect_browser):
    browser = connect_browser(token_for(settings, new_user_id(), expires=timedelta(seconds=3)))
    message = {"client_message_id": "m-4", "body": "still me?"}
    assert browser.client.call("chat:send", message, timeout=ACK_TIMEOUT_SECONDS) == {"ok": True}

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ack = browser.client.call("chat:send", message, timeout=ACK_TIMEOUT_SECONDS)
        if not ack["ok"]:
            break
        time.sleep(0.5)

    assert ack == {"ok": False, "error": "unauthorized"}


def test_a_flood_of_chat_events_is_cut_short(settings, connect_browser):
    browser = connect_browser(token_for(settings, new_user_id()))

    for _ in range(100):
        browser.client.emit("chat:typing", {"conversation_id": 1})

    # A hundred events take far less than the (100 - burst) / rate seconds it would
    # need for the budget to refill.
    ack = browser.client.call("chat:typing", {"conversation_id": 1}, timeout=ACK_TIMEOUT_SECONDS)
    assert ack == {"ok": False, "error": "too many events, slow down"}
