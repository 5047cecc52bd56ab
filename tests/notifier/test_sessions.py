"""Ended sessions reach the real notifier through its own user-events queue: sockets with
an older token version, of a demoted administrator or of a deleted user are disconnected
within 5 s, and such tokens are refused when connecting again."""

from __future__ import annotations

import itertools
import time

import pytest
import socketio

from common.auth import Identity, mint_access_token
from common.messages import Event, UserState
from common.topology import EVENTS_EXCHANGE
from tests.notifier.conftest import new_user_id

DISCONNECT_WITHIN_SECONDS = 5
SEQUENCES = itertools.count(int(time.time() * 1000))


@pytest.fixture
def publish_user_event(notifier, publisher):
    """Return a function that publishes a user event to ems.events once the notifier follows them."""
    deadline = time.monotonic() + 15
    while "sessions.following" not in notifier.log():
        assert time.monotonic() < deadline, notifier.log()
        time.sleep(0.05)

    def publish(event_type: str, user_id: int, role: str = "client", token_version: int = 0,
                sequence: int | None = None) -> None:
        event = Event(sequence or next(SEQUENCES), event_type, "2026-12-01T12:00:00.000+00:00",
                      user=UserState(user_id, f"user {user_id}", role, token_version))
        publisher.publish(EVENTS_EXCHANGE, event_type, event.to_json())

    return publish


def token(settings, user_id: int, role: str = "client", version: int = 0) -> str:
    return mint_access_token(settings, Identity(user_id, role, f"user {user_id}", token_version=version))


def disconnected_within(browser, seconds: float) -> float | None:
    """Return how long the socket took to be disconnected, or None if it was not."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if not browser.client.connected:
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def refused(connect_browser, token_text: str) -> bool:
    try:
        connect_browser(token_text)
    except socketio.exceptions.ConnectionError:
        return True
    return False


def test_a_bumped_token_version_closes_the_users_older_sockets_within_5_s(
        settings, connect_browser, publish_user_event):
    alice, bob = new_user_id(), new_user_id()
    laptop, phone = connect_browser(token(settings, alice)), connect_browser(token(settings, alice))
    bystander = connect_browser(token(settings, bob))
    publish_user_event("user.updated", alice, token_version=1)
    assert disconnected_within(laptop, DISCONNECT_WITHIN_SECONDS) is not None
    assert disconnected_within(phone, 1) is not None
    assert bystander.client.connected
    assert refused(connect_browser, token(settings, alice, version=0))
    assert not refused(connect_browser, token(settings, alice, version=1))


def test_a_demoted_administrator_leaves_the_admins_room_within_5_s(
        settings, connect_browser, publish_user_event):
    admin = new_user_id()
    socket = connect_browser(token(settings, admin, role="admin"))
    publish_user_event("user.updated", admin, role="client", token_version=1)
    assert disconnected_within(socket, DISCONNECT_WITHIN_SECONDS) is not None
    assert refused(connect_browser, token(settings, admin, role="admin"))


def test_a_deleted_users_sockets_close_and_no_token_of_theirs_connects(
        settings, connect_browser, publish_user_event):
    carol = new_user_id()
    socket = connect_browser(token(settings, carol))
    publish_user_event("user.deleted", carol)
    assert disconnected_within(socket, DISCONNECT_WITHIN_SECONDS) is not None
    assert refused(connect_browser, token(settings, carol, version=7))


def test_an_older_event_arriving_late_does_not_bring_an_ended_session_back(
        settings, connect_browser, publish_user_event):
    dave = new_user_id()
    newer = next(SEQUENCES) + 1000
    socket = connect_browser(token(settings, dave))
    publish_user_event("user.updated", dave, token_version=2, sequence=newer)
    assert disconnected_within(socket, DISCONNECT_WITHIN_SECONDS) is not None
    publish_user_event("user.updated", dave, token_version=0, sequence=newer - 1)
    time.sleep(0.5)  # the stale event, if applied, would admit version 1 again
    assert refused(connect_browser, token(settings, dave, version=1))
    assert not refused(connect_browser, token(settings, dave, version=2))


def test_a_new_name_alone_closes_no_socket(settings, connect_browser, publish_user_event):
    erin = new_user_id()
    socket = connect_browser(token(settings, erin))
    publish_user_event("user.updated", erin, token_version=0)
    assert disconnected_within(socket, 1.5) is None
