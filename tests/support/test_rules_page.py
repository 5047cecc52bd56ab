"""The admin's bot rules page: add, edit, disable, reorder, and try a message."""

import secrets

import pytest

from common.auth import Identity, mint_access_token
from support import create_app, rules
from support.extensions import db
from support.models import BotRule


@pytest.fixture(scope="module")
def app(migrated):
    application = create_app(migrated)
    with application.app_context():
        rules.seed_rules()
    return application


def headers(settings, role="admin"):
    token = mint_access_token(settings, Identity(7, role, "Ada"))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(app, migrated):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = headers(migrated)["Authorization"]
    return client


def new_rule(admin, **fields):
    name = fields.pop("name", f"rule {secrets.token_hex(3)}")
    form = {"name": name, "priority": "5", "action": "reply", "patterns": "zorblax widget",
            "answer": "Zorblax answer", **fields}
    return name, admin.post("/support/rules", data=form)


def stored(app, name) -> BotRule:
    with app.app_context():
        return db.session.scalar(db.select(BotRule).where(BotRule.name == name))


def test_rules_page_lists_the_seeded_rules_for_admins_only(app, migrated):
    client = app.test_client()
    page = client.get("/support/rules", headers=headers(migrated))
    assert page.status_code == 200
    assert "talk to a human" in page.text and "today&#39;s consumption" in page.text
    assert client.get("/support/rules", headers=headers(migrated, "client")).status_code == 403
    assert client.post("/support/rules/try", data={"text": "hi"},
                       headers=headers(migrated, "client")).status_code == 403


@pytest.mark.parametrize(("text", "expected"), [
    ("Hi there", "greeting"),
    ("I want to talk to a human", "talk to a human"),
    ("this is high", "No rule fires"),
])
def test_try_a_message_shows_which_rule_fires(admin, text, expected):
    assert expected in admin.post("/support/rules/try", data={"text": text}).text


def test_added_rule_fires_and_can_be_edited_and_disabled(app, admin):
    name, response = new_rule(admin, patterns="zorblax widget\nfrobnicate")
    assert response.status_code == 200 and f"Rule “{name}” added" in response.text
    assert 'hx-swap-oob="true"' in response.text and name in response.text
    assert name in admin.post("/support/rules/try", data={"text": "please frobnicate"}).text
    rule = stored(app, name)
    edited = admin.post(f"/support/rules/{rule.id}", data={
        "name": name, "priority": "5", "action": "reply", "patterns": "quuxify", "answer": "Edited"})
    assert edited.status_code == 200 and "quuxify" in edited.text
    assert name not in admin.post("/support/rules/try", data={"text": "please frobnicate"}).text
    admin.post(f"/support/rules/{rule.id}/toggle")
    assert stored(app, name).enabled is False
    assert name not in admin.post("/support/rules/try", data={"text": "quuxify"}).text


def test_invalid_rule_is_refused_with_its_reasons(app, admin):
    name, response = new_rule(admin, patterns="  ?! ", answer="", action="explode")
    assert response.status_code == 422
    assert "at least one pattern" in response.text and "action must be one of" in response.text
    assert stored(app, name) is None


def test_moving_a_rule_up_puts_it_before_its_neighbour(app, admin):
    low_name, _ = new_rule(admin, priority="-1000", patterns="blorp")
    high_name, _ = new_rule(admin, priority="-999", patterns="blorp")
    assert high_name in admin.post("/support/rules/try", data={"text": "blorp"}).text
    admin.post(f"/support/rules/{stored(app, low_name).id}/move/up")
    assert stored(app, low_name).priority > stored(app, high_name).priority
    assert low_name in admin.post("/support/rules/try", data={"text": "blorp"}).text
