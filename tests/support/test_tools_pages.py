"""The administrators' tools through their routes, on the real database: canned replies, notes,
assignment, inbox views and search, ratings, transcript, stats, demo history; clients kept out."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from common.auth import Identity, mint_access_token
from support import create_app
from support.demo import Person, seed_demo_history
from support.extensions import db
from support.models import CannedReply, Conversation, Message, Resolution, utcnow
from support.users import KnownUser
from tests.support.conftest import new_user_id


@pytest.fixture(scope="module")
def app(migrated):
    return create_app(migrated)


@pytest.fixture(scope="module")
def login(app, migrated):
    """Return a function giving a test client signed in (by bearer token) as a new user of `role`."""
    def make(role: str, user_id: int | None = None, name: str | None = None):
        identity = Identity(user_id or new_user_id(), role, name or f"{role} {secrets.token_hex(2)}")
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + mint_access_token(migrated, identity)
        client.identity = identity
        return client

    return make


def conversation_with(app, client_name: str, *bodies: tuple[str, str], state: str = "bot",
                      client_id: int | None = None, minutes_ago: int = 30) -> Conversation:
    """Store a conversation with (role, body) messages a minute apart; return it (detached)."""
    client_id = client_id or new_user_id()
    start = utcnow() - timedelta(minutes=minutes_ago)
    with app.app_context():
        conversation = Conversation(client_id=client_id, client_name=client_name, state=state,
                                    last_message_at=start + timedelta(minutes=len(bodies)),
                                    waiting_since=start if state == "waiting" else None)
        db.session.add(conversation)
        db.session.flush()
        for number, (role, body) in enumerate(bodies):
            db.session.add(Message(conversation_id=conversation.id, sender_role=role, body=body,
                                   sender_id={"client": client_id, "admin": 1}.get(role, 0),
                                   sender_name=client_name if role == "client" else role,
                                   created_at=start + timedelta(minutes=number)))
        db.session.commit()
        db.session.expunge(conversation)
        return conversation


def listed(html: str, name: str) -> bool:
    """Tell whether an inbox list shows a conversation with this client name."""
    return f'<span class="inbox-name">{name}</span>' in html


def known_admin(app, name: str) -> int:
    """Make support know an administrator (as the portal's user event would); return the id."""
    with app.app_context():
        admin_id = new_user_id()
        db.session.add(KnownUser(user_id=admin_id, name=name, role="admin", last_sequence=1))
        db.session.commit()
        return admin_id


def test_clients_reach_none_of_the_administrators_tools(app, login):
    client = login("client")
    conversation = conversation_with(app, "Chloe", ("client", "hello"), client_id=client.identity.user_id)
    base = f"/support/conversations/{conversation.id}"
    for method, path in [("get", "/support/canned"), ("post", "/support/canned"), ("get", "/support/stats"),
                         ("get", base + "/canned"), ("get", base + "/notes"), ("post", base + "/notes"),
                         ("post", base + "/assign"), ("get", base + "/transcript"),
                         ("get", base + "/ratings"), ("get", "/support/inbox/list?view=resolved")]:
        assert getattr(client, method)(path, data={"body": "x"}).status_code == 403, path
    # And administrators do not rate in a client's place.
    assert login("admin").post("/support/rating", data={"stars": "5"}).status_code == 403


def test_a_form_post_with_the_cookie_but_without_the_csrf_header_is_refused(app, migrated):
    browser = app.test_client()
    token = mint_access_token(migrated, Identity(new_user_id(), "admin", "Ada"))
    browser.set_cookie("access_token_cookie", token)
    response = browser.post("/support/canned", data={"title": "t", "text": "x"})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    with app.app_context():
        assert db.session.scalar(sa.select(CannedReply).where(CannedReply.title == "t")) is None


def test_canned_replies_are_managed_on_their_page_and_filled_for_a_conversation(app, login):
    admin = login("admin", name="Ada Admin")
    title = f"greeting {secrets.token_hex(3)}"
    refused = admin.post("/support/canned", data={"title": title, "text": "Hello {name}"})
    assert refused.status_code == 422
    assert "unknown placeholder {name}: use {client_name}" in refused.text
    assert 'value="' + title + '"' in refused.text  # the typed values are kept
    added = admin.post("/support/canned",
                       data={"title": title, "text": "Hello {client_first_name}, {admin_name} here"})
    assert added.status_code == 200 and f"Canned reply “{title}” added." in added.text
    assert admin.post("/support/canned", data={"title": title, "text": "again"}).status_code == 422

    conversation = conversation_with(app, "Alice <b>Martin</b>", ("client", "hi"))
    replies = admin.get(f"/support/conversations/{conversation.id}/canned").json["replies"]
    mine = next(reply for reply in replies if reply["title"] == title)
    assert mine["text"] == "Hello Alice, Ada Admin here"

    with app.app_context():
        reply_id = db.session.scalar(sa.select(CannedReply.id).where(CannedReply.title == title))
    edited = admin.post(f"/support/canned/{reply_id}", data={"title": title, "text": "Bye {client_name}"})
    assert edited.status_code == 200 and "Bye {client_name}" in edited.text
    page = admin.get("/support/canned")
    assert page.status_code == 200 and title in page.text
    assert admin.post(f"/support/canned/{reply_id}/delete").status_code == 200
    assert title not in admin.get("/support/canned").text


def test_private_notes_are_shown_to_administrators_and_never_to_the_client(app, login):
    client = login("client")
    conversation = conversation_with(app, "Nora", ("client", "my meter is off"),
                                     client_id=client.identity.user_id)
    admin = login("admin", name="Ada")
    secret = f"note-{secrets.token_hex(4)} <i>check the wiring</i>"
    refused = admin.post(f"/support/conversations/{conversation.id}/notes", data={"body": "   "})
    assert refused.status_code == 422 and "the note is empty" in refused.text
    panel = admin.post(f"/support/conversations/{conversation.id}/notes", data={"body": secret})
    assert panel.status_code == 200
    assert "&lt;i&gt;check the wiring&lt;/i&gt;" in panel.text and "<i>" not in panel.text
    pane = admin.get(f"/support/conversations/{conversation.id}", headers={"HX-Request": "true"})
    assert "check the wiring" in pane.text and 'class="chat-note"' in pane.text

    marker = secret.split()[0]
    for path in ["/support/widget", "/api/support/conversation",
                 f"/api/support/conversations/{conversation.id}/messages",
                 f"/support/conversations/{conversation.id}/messages"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert marker not in response.text, path


def test_a_conversation_is_assigned_to_a_known_administrator_only(app, login):
    admin = login("admin")
    colleague_id = known_admin(app, f"Colleague {secrets.token_hex(2)}")
    name = f"Ivan {secrets.token_hex(3)}"
    conversation = conversation_with(app, name, ("client", "talk to a human"), state="waiting")
    pane = admin.post(f"/support/conversations/{conversation.id}/assign",
                      data={"admin_id": str(colleague_id)}, headers={"HX-Request": "true"})
    assert pane.status_code == 200
    with app.app_context():
        stored = db.session.get(Conversation, conversation.id)
        assert (stored.state, stored.assigned_admin_id) == ("assigned", colleague_id)
    for admin_id in ("", "abc", str(new_user_id()), str(conversation.client_id)):
        refused = admin.post(f"/support/conversations/{conversation.id}/assign", data={"admin_id": admin_id})
        assert refused.status_code == 422, admin_id
    # The colleague finds it under "Mine"; others do not.
    colleague = login("admin", user_id=colleague_id)
    assert listed(colleague.get("/support/inbox/list?view=mine").text, name)
    assert not listed(admin.get("/support/inbox/list?view=mine").text, name)
    assert not listed(admin.get(f"/support/inbox/list?view=unassigned&q={name}").text, name)
    assert listed(admin.get(f"/support/inbox/list?view=all&q={name}").text, name)


def test_the_inbox_searches_names_and_messages_escaped_and_paginated(app, login):
    admin = login("admin")
    tag = secrets.token_hex(4)
    conversation_with(app, f"Zed {tag}", ("client", "nothing special"))
    conversation_with(app, "Yara", ("client", f"my boiler {tag} leaks"), ("bot", "sorry"))
    conversation_with(app, "<script>x</script>", ("client", f"{tag} 100%"), state="resolved")
    by_name = admin.get(f"/support/inbox/list?view=all&q=Zed {tag}").text
    assert listed(by_name, f"Zed {tag}") and not listed(by_name, "Yara")
    by_text = admin.get(f"/support/inbox/list?view=all&q={tag}").text
    assert listed(by_text, "Yara") and listed(by_text, f"Zed {tag}") and "&lt;script&gt;" not in by_text
    resolved = admin.get(f"/support/inbox/list?view=resolved&q={tag}").text
    assert "&lt;script&gt;x&lt;/script&gt;" in resolved and "<script>x" not in resolved
    # % and _ are letters in a search, not wildcards.
    assert not listed(admin.get(f"/support/inbox/list?view=all&q={tag[:2]}%25{tag[-2:]}").text, "Yara")
    assert "No conversation matches" in admin.get("/support/inbox/list?q=%25_%25_nothing-like-it").text
    # Message words match by their beginning (the full-text index); operators are plain text.
    assert listed(admin.get(f"/support/inbox/list?q=boil {tag[:5]}").text, "Yara")
    assert listed(admin.get(f'/support/inbox/list?q=-boiler "{tag}"').text, "Yara")

    for number in range(26):
        conversation_with(app, f"Page {tag} {number:02}", ("client", "hi"), minutes_ago=100 + number)
    first = admin.get(f"/support/inbox/list?q=Page {tag}").text
    assert first.count('class="inbox-row ') == 25 and "Next →" in first
    second = admin.get(f"/support/inbox/list?q=Page {tag}&page=2").text
    assert second.count('class="inbox-row ') == 1 and "← Previous" in second


def test_after_resolve_the_client_rates_once_and_administrators_see_it(app, login):
    client = login("client")
    conversation = conversation_with(app, "Rita", ("client", "talk to a human"), ("admin", "Hello Rita"),
                                     state="assigned", client_id=client.identity.user_id)
    assert "How well did we help you?" not in client.get("/support/rating").text
    admin = login("admin")
    assert admin.post(f"/support/conversations/{conversation.id}/resolve").status_code == 200
    with app.app_context():
        resolution = db.session.scalar(sa.select(Resolution)
                                       .where(Resolution.conversation_id == conversation.id))
        assert resolution.bot_only is False and resolution.first_response_at is not None
    assert "How well did we help you?" in client.get("/support/widget").text
    refused = client.post("/support/rating", data={"resolution_id": resolution.id, "stars": "9"})
    assert refused.status_code == 422 and "choose from 1 to 5 stars" in refused.text
    rated = client.post("/support/rating", data={"resolution_id": resolution.id, "stars": "4",
                                                 "comment": "<b>quick</b>"})
    assert rated.status_code == 200 and "Thank you for your rating." in rated.text
    again = client.post("/support/rating", data={"resolution_id": resolution.id, "stars": "1"})
    assert again.status_code == 409 and "already rated" in again.text
    assert "How well did we help you?" not in client.get("/support/rating").text
    # Someone else's resolution cannot be rated.
    other = login("client")
    conversation_with(app, "Otto", ("client", "hi"), client_id=other.identity.user_id, state="resolved")
    stolen = other.post("/support/rating", data={"resolution_id": resolution.id, "stars": "5"})
    assert stolen.status_code == 422
    pane = admin.get(f"/support/conversations/{conversation.id}", headers={"HX-Request": "true"}).text
    assert 'aria-label="4 of 5 stars"' in pane and "&lt;b&gt;quick&lt;/b&gt;" in pane
    assert 'aria-label="4 of 5 stars"' in admin.get(f"/support/conversations/{conversation.id}/ratings").text
    # A second "Resolve" without new messages records no second episode.
    admin.post(f"/support/conversations/{conversation.id}/resolve")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Resolution)
                                 .where(Resolution.conversation_id == conversation.id)) == 1


def test_the_transcript_is_plain_text_in_the_stated_zone(app, login):
    conversation = conversation_with(app, "Tom", ("client", "<b>hi</b>"), ("bot", "Hello"))
    response = login("admin").get(f"/support/conversations/{conversation.id}/transcript?tz=Asia/Tokyo")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"] == \
        f'attachment; filename="conversation-{conversation.id}-transcript.txt"'
    assert "Times are in Asia/Tokyo." in response.text
    assert "+0900] Tom (client):\n  <b>hi</b>" in response.text


def test_the_demo_history_fills_the_stats_page_with_charts(app, login):
    admin_id, client_ids = new_user_id(), [new_user_id(), new_user_id()]
    people = [Person(admin_id, "Ada Admin", "admin"), Person(client_ids[0], "Alice Martin", "client"),
              Person(client_ids[1], "Bob Novak", "client")]
    with app.app_context():
        assert seed_demo_history(people) == 2
        assert seed_demo_history(people) == 0  # safe to repeat
        rows = db.session.execute(sa.select(Resolution.rating, Resolution.bot_only)
                                  .join(Conversation, Conversation.id == Resolution.conversation_id)
                                  .where(Conversation.client_id.in_(client_ids))).all()
        assert len(rows) == 14 and any(rating for rating, _ in rows) and any(bot for _, bot in rows)
    page = login("admin").get("/support/stats?tz=Europe/Bucharest")
    assert page.status_code == 200 and "in Europe/Bucharest" in page.text
    assert page.text.count('<svg class="support-chart') == 4
    resolved = int(page.text.split('data-testid="resolved-total">')[1].split("<")[0])
    assert resolved >= 14
    assert "min" in page.text.split('data-testid="median-first-response">')[1].split("<")[0]


def test_an_administrator_known_from_before_roles_becomes_assignable_once_they_open_the_inbox(app, login):
    with app.app_context():
        legacy_id = new_user_id()
        db.session.add(KnownUser(user_id=legacy_id, name="Old Admin", role=None, last_sequence=1))
        db.session.commit()
    conversation = conversation_with(app, "Lena", ("client", "talk to a human"), state="waiting")
    path = f"/support/conversations/{conversation.id}/assign"
    admin = login("admin")
    assert admin.post(path, data={"admin_id": str(legacy_id)}).status_code == 422
    assert login("admin", user_id=legacy_id, name="Old Admin").get("/support/inbox").status_code == 200
    assert admin.post(path, data={"admin_id": str(legacy_id)}).status_code == 200
    # A client's token never makes anyone an administrator.
    with app.app_context():
        client_id = new_user_id()
        db.session.add(KnownUser(user_id=client_id, name="Cleo", role=None, last_sequence=1))
        db.session.commit()
    assert login("client", user_id=client_id).get("/support/inbox").status_code == 403
    assert admin.post(path, data={"admin_id": str(client_id)}).status_code == 422


def test_an_open_episode_starts_at_the_first_message_after_the_last_resolution(app, login):
    conversation = conversation_with(app, "Erin", ("client", "first question"), ("admin", "answer"),
                                     state="assigned", minutes_ago=60)
    login("admin").post(f"/support/conversations/{conversation.id}/resolve")
    with app.app_context():
        reopened_at = utcnow().replace(microsecond=0) + timedelta(seconds=1)
        for number, moment in enumerate((reopened_at, reopened_at + timedelta(minutes=1))):
            db.session.add(Message(conversation_id=conversation.id, sender_id=conversation.client_id,
                                   sender_role="client", sender_name="Erin", body=f"again {number}",
                                   created_at=moment))
        stored = db.session.get(Conversation, conversation.id)
        stored.state, stored.last_message_at = "bot", reopened_at + timedelta(minutes=1)
        db.session.commit()
        from support import stats

        episodes = stats.load_episodes(utcnow() - timedelta(hours=2))
        first = conversation_first(conversation)
        resolved = [e for e in episodes if e.resolved_at and e.opened_at == first]
        assert len(resolved) == 1 and resolved[0].first_response_at is not None
        assert stats.Episode(reopened_at) in episodes


def conversation_first(conversation) -> datetime:
    """Return when the conversation's first message was written."""
    return db.session.scalar(sa.select(sa.func.min(Message.created_at))
                             .where(Message.conversation_id == conversation.id))
