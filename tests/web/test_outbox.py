"""The transactional outbox: the event row is written in the same transaction as
the change, carries the change's full state, and its id is the event's sequence.
(The relay that publishes the rows is tested in test_relay.py.)"""

import json

import pytest
from sqlalchemy import create_engine, text

from common.db import engine_options
from common.messages import parse_event
from tests.web.conftest import outbox_events
from web import inventory
from web.extensions import db
from web.inventory import create_device
from web.models import Device, OutboxEvent


@pytest.fixture
def engine(migrated):
    engine = create_engine(migrated.database_url("web"), **engine_options())
    yield engine
    engine.dispose()


def test_event_sequence_is_the_outbox_id_and_the_body_is_a_valid_event(app, make_user, make_device):
    alice = make_user("client")
    device_id = make_device("Heat pump", owner_id=alice.id, limit="3.5")
    with app.app_context():
        rows = db.session.query(OutboxEvent).order_by(OutboxEvent.id).all()
        assert [(row.routing_key, row.body["sequence"]) for row in rows] == [
            ("user.created", rows[0].id),
            ("device.created", rows[1].id),
        ]
        event = parse_event(json.dumps(rows[1].body).encode())
    assert event.device.id == device_id and event.device.owner_id == alice.id
    assert event.device.max_hourly_kwh == 3.5 and event.device.name == "Heat pump"
    assert event.occurred_at.endswith("+00:00")


def test_a_change_that_fails_after_its_event_was_written_leaves_neither(app, monkeypatch):
    recorded = inventory.record_event

    def record_then_fail(*args, **kwargs):
        recorded(*args, **kwargs)
        raise RuntimeError("database went away mid-transaction")

    monkeypatch.setattr(inventory, "record_event", record_then_fail)
    with app.app_context():
        with pytest.raises(RuntimeError):
            create_device({"name": "Doomed", "max_hourly_kwh": "1"})
        db.session.rollback()
        assert db.session.query(Device).count() == 0
    assert outbox_events(app) == []


def test_published_rows_are_removed_after_the_retention_period(app, engine, make_device):
    from web.relay import PUBLISHED_RETENTION, delete_old_published

    make_device("Old")
    make_device("Recent")
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE outbox SET published_at = UTC_TIMESTAMP() - INTERVAL :days DAY "
                "WHERE id = (SELECT MIN(id) FROM (SELECT id FROM outbox) AS o)"
            ),
            {"days": PUBLISHED_RETENTION.days + 1},
        )
    assert delete_old_published(engine) == 1
    assert [event["device"]["name"] for event in outbox_events(app)] == ["Recent"]
