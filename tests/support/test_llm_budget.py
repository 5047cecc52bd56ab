"""The LLM fallback has an hourly budget per client: beyond it the bot says so,
offers a human, and the model is not called."""

import pytest

from common.auth import Identity
from common.settings import load_settings
from support import create_app, rules
from support.llm import CallBudget
from support.notify import Broadcaster
from support.responder import LLM_BUDGET_ANSWER, Responder
from tests.support.conftest import new_user_id
from tests.support.test_responder import RecordingEmitter, bot_messages, client_says, state_of


@pytest.fixture
def budgeted(migrated, fake_monitor, fake_llm):
    settings = load_settings(monitor_api_url=fake_monitor.url, llm_base_url=fake_llm.url,
                             llm_model="test-model", llm_timeout_seconds=0.5, llm_calls_per_user_per_hour=2)
    app = create_app(settings)
    with app.app_context():
        rules.seed_rules()
    return app, Responder(app, Broadcaster(RecordingEmitter()), workers=1)


def test_beyond_its_hourly_budget_a_client_gets_no_more_llm_answers(budgeted, fake_llm):
    app, responder = budgeted
    client = Identity(new_user_id(), "client", "Client")
    asked = len(fake_llm.requests)
    for question in ("is a sauna reasonable?", "and a pool?", "and a jacuzzi?"):
        conversation_id, message_id = client_says(app, client, question)
        responder.answer(conversation_id, message_id)

    assert len(fake_llm.requests) - asked == 2
    answers = bot_messages(app, conversation_id)
    assert answers[-1] == LLM_BUDGET_ANSWER and "talk to a human" in answers[-1]
    assert state_of(app, conversation_id) == "bot"
    # Another client has a budget of their own.
    other = Identity(new_user_id(), "client", "Other")
    conversation_id, message_id = client_says(app, other, "is a sauna reasonable?")
    responder.answer(conversation_id, message_id)
    assert len(fake_llm.requests) - asked == 3


def test_the_budget_is_a_sliding_hour():
    budget = CallBudget(calls_per_hour=2)
    assert [budget.take(1, now=at) for at in (0.0, 10.0, 20.0)] == [True, True, False]
    assert budget.take(2, now=20.0) is True
    assert budget.take(1, now=3600.5) is True
    assert budget.take(1, now=3601.0) is False
