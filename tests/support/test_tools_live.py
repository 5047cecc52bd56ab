"""Private notes travel to the administrators' sockets only, through the real notifier."""

from __future__ import annotations

import secrets


def test_a_private_note_reaches_administrators_sockets_and_never_the_clients(users):
    client, admin = users("client"), users("admin")
    client.send("hello, my meter is off")
    conversation_id = client.wait_for("chat:message", sender_role="client")["conversation_id"]
    secret = f"note {secrets.token_hex(4)}: check the wiring"
    response = admin.http("POST", f"/support/conversations/{conversation_id}/notes", data={"body": secret})
    assert response.status_code == 200 and secret in response.text
    assert admin.wait_for("chat:note", conversation_id=conversation_id)
    # An event sent to the client after the note arrives after it would have: the note never came.
    admin.send("Hello, looking at it now", conversation_id=conversation_id)
    client.wait_for("chat:message", sender_role="admin")
    assert not client.received("chat:note")
    assert all(secret not in repr(data) for _, data in client.events)
