"""Chat through the real processes: browser sockets → notifier → RabbitMQ → support → browsers."""

import uuid

import pytest

from tests.support.conftest import wait_until

pytestmark = pytest.mark.slow


def history(user, conversation_id):
    response = user.http("GET", f"/api/support/conversations/{conversation_id}/messages?limit=100")
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_client_message_reaches_admins_and_the_reply_reaches_the_client(users):
    admin, client = users("admin"), users("client")
    client.send("I have a question about my contract")
    incoming = admin.wait_for("chat:message", sender_id=client.id)
    assert incoming["body"] == "I have a question about my contract"
    assert incoming["sender_role"] == "client"
    conversation_id = incoming["conversation_id"]

    admin.send("Happy to help!", conversation_id=conversation_id)
    reply = client.wait_for("chat:message", sender_id=admin.id)
    assert reply["body"] == "Happy to help!"
    # Replying takes the conversation.
    assert reply["state"] == "assigned"
    assert client.wait_for("chat:conversation", id=conversation_id, state="assigned")
    bodies = [m["body"] for m in history(admin, conversation_id)]
    assert "I have a question about my contract" in bodies and "Happy to help!" in bodies


def test_assigned_conversation_reaches_only_its_admin_but_a_colleague_may_step_in(users):
    ada, bo, client = users("admin"), users("admin"), users("client")
    client.send("talk to a human")
    conversation_id = ada.wait_for("chat:message", sender_id=client.id)["conversation_id"]
    taken = ada.http("POST", f"/api/support/conversations/{conversation_id}/take")
    assert taken.json()["conversation"]["assigned_admin_id"] == ada.id
    client.send("are you there?")
    ada.wait_for("chat:message", body="are you there?")
    bo.wait_for("chat:conversation", id=conversation_id, state="assigned")  # inbox rows reach every admin
    assert not bo.received("chat:message", body="are you there?")
    bo.send("A colleague here", conversation_id=conversation_id)
    bo.wait_for("chat:message", sender_id=bo.id)
    client.wait_for("chat:message", sender_id=bo.id)
    ada.wait_for("chat:message", sender_id=bo.id)


def test_bot_answers_from_the_clients_own_devices(users, fake_monitor):
    client = users("client")
    fake_monitor.devices[client.id] = [{"id": str(uuid.uuid4()), "name": "Heat pump", "limit_kwh": 2.0,
                                        "today_kwh": 3.5, "yesterday_kwh": 11.25, "latest_alert": None}]
    client.send("how much did I use yesterday?")
    answer = client.wait_for("chat:message", sender_role="bot")
    assert "Heat pump: 11.25 kWh" in answer["body"]
    # Support asked the monitor as this client, so the monitor's own authorization applied.
    assert any(caller.user_id == client.id and caller.role == "client" for caller in fake_monitor.callers)


def test_talk_to_a_human_hands_the_conversation_to_the_admins(users):
    admin, client = users("admin"), users("client")
    client.send("Can I speak to a real person please?")
    row = admin.wait_for("chat:conversation", client_id=client.id, state="waiting")
    assert row["waiting_since"]
    bot = client.wait_for("chat:message", sender_role="bot")
    assert "administrator" in bot["body"]
    listed = admin.http("GET", "/api/support/conversations").json()["conversations"]
    assert any(c["id"] == row["id"] and c["state"] == "waiting" and c["unread"] == 1 for c in listed)
    # Waiting for a human: the bot stays quiet.
    client.send("hello?")
    admin.wait_for("chat:message", sender_id=client.id, body="hello?")
    assert len(client.received("chat:message", sender_role="bot")) == 1


def test_typing_reaches_only_the_other_party(users):
    admin, client, bystander = users("admin"), users("client"), users("client")
    client.send("talk to a human")
    conversation_id = admin.wait_for("chat:message", sender_id=client.id)["conversation_id"]

    assert client.emit("chat:typing", {"conversation_id": conversation_id}) == {"ok": True}
    typing = admin.wait_for("chat:typing", conversation_id=conversation_id)
    assert typing["sender_id"] == client.id

    assert admin.emit("chat:typing", {"conversation_id": conversation_id}) == {"ok": True}
    client.wait_for("chat:typing", sender_id=admin.id)
    assert not client.received("chat:typing", sender_id=client.id)
    assert not admin.received("chat:typing", sender_id=admin.id)
    assert not bystander.received("chat:typing")


def test_read_receipt_reaches_the_sender(users):
    admin, client = users("admin"), users("client")
    client.send("talk to a human")
    message = admin.wait_for("chat:message", sender_id=client.id)
    assert admin.emit("chat:read", {"conversation_id": message["conversation_id"],
                                    "message_id": message["id"]}) == {"ok": True}
    receipt = client.wait_for("chat:read", message_id=message["id"])
    assert receipt["reader_role"] == "admin"
    mine = client.http("GET", "/api/support/conversation").json()
    assert mine["seen_up_to"] >= message["id"]


def test_retried_send_is_stored_and_answered_once(users):
    client = users("client")
    client_message_id = uuid.uuid4().hex
    client.send("hi", client_message_id=client_message_id)
    client.wait_for("chat:message", sender_role="bot")
    client.send("hi", client_message_id=client_message_id)  # the browser retries after a lost ack
    client.wait_for("chat:message", sender_id=client.id)
    wait_until(lambda: len(client.received("chat:message", sender_id=client.id)) == 2,
               message="the retried message's echo")
    conversation_id = client.received("chat:message", sender_id=client.id)[0]["conversation_id"]
    stored = history(client, conversation_id)
    assert [m["client_message_id"] for m in stored if m["sender_role"] == "client"] == [client_message_id]
    assert len([m for m in stored if m["sender_role"] == "bot"]) == 1


def test_client_cannot_post_into_read_or_mark_read_another_clients_conversation(users, dead_letters):
    alice, mallory = users("client"), users("client")
    alice.send("my private question")
    own = alice.wait_for("chat:message", sender_id=alice.id)
    conversation_id, message_id = own["conversation_id"], own["id"]

    marker = uuid.uuid4().hex
    mallory.send(f"injected {marker}", conversation_id=conversation_id)
    assert "not a participant" in dead_letters(marker)
    read_marker = uuid.uuid4().hex
    mallory.emit("chat:read", {"conversation_id": conversation_id, "message_id": message_id,
                               "note": read_marker})
    assert "not a participant" in dead_letters(read_marker)
    typing_marker = uuid.uuid4().hex
    mallory.emit("chat:typing", {"conversation_id": conversation_id, "note": typing_marker})
    assert "not a participant" in dead_letters(typing_marker)

    assert all(marker not in m["body"] for m in history(alice, conversation_id))
    assert not alice.received("chat:typing") and not alice.received("chat:read")
    assert not mallory.received("chat:message", conversation_id=conversation_id)
    for path in (f"/api/support/conversations/{conversation_id}/messages",
                 f"/support/conversations/{conversation_id}/messages"):
        assert mallory.http("GET", path).status_code == 403
    refused = mallory.http("POST", f"/api/support/conversations/{conversation_id}/read",
                           json={"message_id": message_id})
    assert refused.status_code == 403
    assert mallory.http("GET", "/api/support/conversations").status_code == 403
    assert mallory.http("GET", "/support/inbox").status_code == 403


def test_invalid_messages_are_dead_lettered_with_a_reason(users, dead_letters, publish_chat):
    client = users("client")
    too_long = "x" * 2001 + uuid.uuid4().hex
    client.emit("chat:send", {"client_message_id": uuid.uuid4().hex, "body": too_long[-2100:]})
    assert "limit is 2000" in dead_letters(too_long[-32:])
    error = client.wait_for("chat:error")
    assert "2000" in error["reason"]
    marker = uuid.uuid4().hex
    publish_chat("inbound.message", f'{{"not": "a chat message", "m": "{marker}"}}'.encode())
    assert "sender and payload" in dead_letters(marker)


def test_html_in_a_message_is_shown_as_text(users):
    admin, client = users("admin"), users("client")
    client.send('<img src=x onerror="alert(1)"><script>alert(2)</script>')
    conversation_id = admin.wait_for("chat:message", sender_id=client.id)["conversation_id"]
    widget = client.http("GET", "/support/widget")
    assert widget.status_code == 200
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in widget.text
    assert "<script>alert(2)" not in widget.text and "<img src=x" not in widget.text
    pane = admin.http("GET", f"/support/conversations/{conversation_id}", headers={"HX-Request": "true"})
    assert "&lt;img src=x" in pane.text and "<img src=x" not in pane.text


def test_resolved_conversation_reopens_with_the_bot_on_a_new_message(users):
    admin, client = users("admin"), users("client")
    client.send("talk to a human")
    conversation_id = admin.wait_for("chat:message", sender_id=client.id)["conversation_id"]
    resolved = admin.http("POST", f"/api/support/conversations/{conversation_id}/resolve")
    assert resolved.json()["conversation"]["state"] == "resolved"
    client.wait_for("chat:conversation", id=conversation_id, state="resolved")
    client.send("thanks")
    answer = wait_until(lambda: [m for m in client.received("chat:message", sender_role="bot")
                                 if "welcome" in m["body"]], message="the bot's answer")[0]
    assert answer["conversation_id"] == conversation_id  # one conversation per client, reopened


def test_history_is_paginated_with_a_cursor(users, publish_chat):
    client = users("client")
    client.send("talk to a human")
    client.wait_for("chat:conversation", state="waiting")
    # More than the notifier lets one socket send at once: publish as the notifier would.
    for n in range(1, 35):
        publish_chat("inbound.message", {
            "sender": {"id": client.id, "role": "client", "name": client.identity.name},
            "payload": {"client_message_id": f"bulk-{n}", "body": f"message {n}"},
            "received_at": "2026-11-26T12:00:00+00:00"})
    wait_until(lambda: len(client.received("chat:message", sender_id=client.id)) == 35,
               message="35 echoes")
    conversation_id = client.received("chat:message", sender_id=client.id)[0]["conversation_id"]
    first = client.http("GET", f"/api/support/conversations/{conversation_id}/messages").json()
    assert len(first["messages"]) == 30 and first["has_earlier"]
    assert first["messages"][-1]["body"] == "message 34"
    earlier = client.http("GET", f"/api/support/conversations/{conversation_id}/messages"
                                 f"?before={first['next_before']}").json()
    assert not earlier["has_earlier"]
    ids = [m["id"] for m in earlier["messages"] + first["messages"]]
    assert ids == sorted(set(ids)) and len(ids) == 36  # 35 messages and the bot's hand-off answer
    page = client.http("GET", f"/support/conversations/{conversation_id}/messages"
                              f"?before={first['next_before']}")
    assert "talk to a human" in page.text and "Load earlier" not in page.text


def test_presence_tells_clients_whether_an_admin_is_online(users):
    client = users("client")
    admin = users("admin")
    wait_until(lambda: client.http("GET", "/api/support/conversation").json()["admins_online"],
               message="an admin online")
    admin.close()
    wait_until(lambda: not client.http("GET", "/api/support/conversation").json()["admins_online"],
               message="no admin online")
    client.wait_for("presence", admins_online=False)
    assert "Administrators are away" in client.http("GET", "/support/widget").text
