"""The bot's answers computed in-process against the real database: rules, LLM fallback, hand-off."""

import pytest
import sqlalchemy as sa

from common.auth import Identity
from common.settings import load_settings
from support import chat, create_app, rules
from support.extensions import db
from support.models import Conversation, Message
from support.notify import Broadcaster
from support.responder import LLM_HANDOFF_ANSWER, NO_MATCH_ANSWER, Responder
from tests.support.conftest import new_user_id


class RecordingEmitter:
    """Stands in for the Socket.IO message queue and remembers every emit."""

    def __init__(self):
        self.emits = []

    def emit(self, event, data, room=None, namespace=None):
        self.emits.append((event, data, room))


def make_responder(migrated, fake_monitor, fake_llm=None):
    llm = {"llm_base_url": fake_llm.url, "llm_model": "test-model", "llm_timeout_seconds": 0.5} \
        if fake_llm else {"llm_base_url": "", "llm_model": ""}
    settings = load_settings(monitor_api_url=fake_monitor.url, **llm)
    app = create_app(settings)
    with app.app_context():
        rules.seed_rules()
    emitter = RecordingEmitter()
    return app, Responder(app, Broadcaster(emitter), workers=1), emitter


def client_says(app, client: Identity, text: str) -> tuple[int, int]:
    with app.app_context():
        conversation = chat.conversation_for_client(client)
        posted = chat.post_message(client, conversation, text, f"m-{new_user_id()}", stored={})
        db.session.commit()
        return conversation.id, posted.message.id


def bot_messages(app, conversation_id):
    with app.app_context():
        return list(db.session.scalars(sa.select(Message.body).where(
            Message.conversation_id == conversation_id, Message.sender_role == "bot")))


def state_of(app, conversation_id):
    with app.app_context():
        return db.session.get(Conversation, conversation_id).state


@pytest.fixture
def client():
    return Identity(new_user_id(), "client", "Client")


def test_llm_answers_what_no_rule_matches_with_only_this_clients_devices(migrated, fake_monitor, fake_llm,
                                                                        client):
    other = new_user_id()
    fake_monitor.devices[client.user_id] = [{"id": "a", "name": "Sauna", "limit_kwh": 6.0, "today_kwh": 9.0,
                                             "yesterday_kwh": 1.0, "latest_alert": None}]
    fake_monitor.devices[other] = [{"id": "b", "name": "Secret greenhouse", "limit_kwh": 1.0,
                                    "today_kwh": 1.0, "yesterday_kwh": 1.0, "latest_alert": None}]
    app, responder, emitter = make_responder(migrated, fake_monitor, fake_llm)
    conversation_id, message_id = client_says(app, client, "is a sauna every evening reasonable?")
    responder.answer(conversation_id, message_id)
    assert bot_messages(app, conversation_id) == ["Your heater used 4.2 kWh today."]
    context = " ".join(m["content"] for m in fake_llm.requests[-1]["body"]["messages"])
    assert "Sauna" in context and "Secret greenhouse" not in context
    assert state_of(app, conversation_id) == "bot"
    assert [event for event, *_ in emitter.emits] == ["chat:message"]


@pytest.mark.parametrize("mode", ["error", "timeout", "malformed"])
def test_llm_failure_hands_the_conversation_to_an_admin(migrated, fake_monitor, fake_llm, client, mode):
    fake_llm.mode = mode
    app, responder, emitter = make_responder(migrated, fake_monitor, fake_llm)
    conversation_id, message_id = client_says(app, client, "something no rule knows about")
    responder.answer(conversation_id, message_id)
    assert bot_messages(app, conversation_id) == [LLM_HANDOFF_ANSWER]
    assert state_of(app, conversation_id) == "waiting"
    assert any(event == "chat:conversation" and data["state"] == "waiting"
               for event, data, _ in emitter.emits)


def test_without_llm_an_unknown_question_gets_the_help_answer(migrated, fake_monitor, client):
    app, responder, _ = make_responder(migrated, fake_monitor)
    conversation_id, message_id = client_says(app, client, "something no rule knows about")
    responder.answer(conversation_id, message_id)
    assert bot_messages(app, conversation_id) == [NO_MATCH_ANSWER]


def test_each_client_message_is_answered_once(migrated, fake_monitor, client):
    app, responder, emitter = make_responder(migrated, fake_monitor)
    conversation_id, message_id = client_says(app, client, "thanks")
    responder.answer(conversation_id, message_id)
    responder.answer(conversation_id, message_id)  # redelivered, or recovered after a restart
    assert len(bot_messages(app, conversation_id)) == 1
    assert len(emitter.emits) == 1


def test_bot_stays_quiet_once_an_admin_has_the_conversation(migrated, fake_monitor, client):
    app, responder, _ = make_responder(migrated, fake_monitor)
    conversation_id, message_id = client_says(app, client, "hello")
    with app.app_context():
        chat.assign(db.session.get(Conversation, conversation_id), Identity(1, "admin", "Ada"))
        db.session.commit()
    responder.answer(conversation_id, message_id)
    assert bot_messages(app, conversation_id) == []


def test_unanswered_messages_are_found_after_a_restart(migrated, fake_monitor, client):
    app, responder, _ = make_responder(migrated, fake_monitor)
    conversation_id, message_id = client_says(app, client, "bye")
    with app.app_context():
        assert responder.answer_pending() >= 1
    responder.shutdown()  # waits for the scheduled answers
    assert bot_messages(app, conversation_id) == ["Goodbye! Write here any time."]
