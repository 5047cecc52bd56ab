"""Limits per user, not per socket: more sockets buy neither more chat events nor more
connections than the cap."""

from __future__ import annotations

import time

import pytest
import socketio

from common.auth import Identity
from notifier.events import TOO_MANY_EVENTS, TOO_MANY_SOCKETS
from notifier.presence import Connections
from tests.notifier.conftest import new_user_id, token_for

ACK_TIMEOUT_SECONDS = 5
LATER = 4_000_000_000.0
CLIENT = Identity(7, "client", "Carol")


def test_sockets_of_one_user_share_one_event_budget(settings, connect_browser):
    token = token_for(settings, new_user_id())
    sockets = [connect_browser(token) for _ in range(4)]

    # 4 x 8 events: each socket stays under the burst of 20, the user does not.
    for browser in sockets:
        for _ in range(8):
            browser.client.emit("chat:typing", {"conversation_id": 1})

    fresh = connect_browser(token)  # a new socket brings no new budget either
    ack = fresh.client.call("chat:typing", {"conversation_id": 1}, timeout=ACK_TIMEOUT_SECONDS)
    assert ack == {"ok": False, "error": TOO_MANY_EVENTS}


def test_a_user_may_hold_only_so_many_sockets(settings, connect_browser):
    token = token_for(settings, new_user_id())
    sockets = [connect_browser(token) for _ in range(settings.sockets_per_user)]

    with pytest.raises(socketio.exceptions.ConnectionError, match=TOO_MANY_SOCKETS):
        connect_browser(token)
    # Someone else is not affected, and a closed tab makes room again.
    connect_browser(token_for(settings, new_user_id()))
    sockets[0].client.disconnect()
    connect_browser(token)


def test_reconnecting_does_not_refill_the_budget():
    connections = Connections(event_burst=3, events_per_second=0.001, sockets_per_user=2)
    connections.add("a", CLIENT, LATER)
    budget = connections.user("a", now=0).budget
    assert [budget.spend(time.monotonic()) for _ in range(4)] == [True, True, True, False]
    connections.remove("a")
    connections.add("b", CLIENT, LATER)
    assert connections.user("b", now=0).budget.spend(time.monotonic()) is False


def test_the_socket_cap_counts_sockets_per_user():
    connections = Connections(sockets_per_user=2)
    connections.add("a", CLIENT, LATER)
    connections.add("b", CLIENT, LATER)
    assert connections.has_room_for(CLIENT.user_id) is False
    assert connections.has_room_for(8) is True
    connections.remove("a")
    assert connections.has_room_for(CLIENT.user_id) is True
