"""Who is connected to this notifier instance, and the presence message for support."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from common.auth import Identity
from common.messages import PresenceReport, parse_utc_time


def instance_id() -> str:
    """Return a name for this notifier process that no other process shares."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def utc_now_iso() -> str:
    """Return the current time as an ISO 8601 UTC string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def presence_message(instance: str, admin_ids: list[int], at: str) -> bytes:
    """Encode the presence report: which administrators this instance serves, as of `at`."""
    return PresenceReport(instance, tuple(admin_ids), parse_utc_time(at, "at")).to_json()


class EventBudget:
    """A token bucket: a socket may send `burst` events at once, then `per_second`."""

    def __init__(self, burst: int, per_second: float, now: float):
        self.burst = burst
        self.per_second = per_second
        self.tokens = float(burst)
        self.updated = now

    def spend(self, now: float) -> bool:
        """Take one event from the budget; tell whether there was one."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


    def is_full(self, now: float) -> bool:
        """Tell whether the budget has refilled completely (forgetting it then changes nothing)."""
        return self.tokens + (now - self.updated) * self.per_second >= self.burst


@dataclass
class SocketUser:
    """Who is behind one socket, until when their token is valid, and what they may still send."""

    identity: Identity
    expires_at: float  # epoch seconds: the access token's `exp`
    budget: EventBudget  # on the monotonic clock, shared by every socket of the user


class Connections:
    """The verified identity behind each socket of this instance.

    Abuse limits are per user, not per socket: all of a user's sockets share one
    event budget, and a user may hold only `sockets_per_user` sockets here, so
    opening more tabs or sockets buys no more events.
    """

    # Chat events one user may send: a short burst, then a steady trickle.
    EVENT_BURST = 20
    EVENTS_PER_SECOND = 5.0
    SOCKETS_PER_USER = 10

    def __init__(self, event_burst: int = EVENT_BURST, events_per_second: float = EVENTS_PER_SECOND,
                 sockets_per_user: int = SOCKETS_PER_USER):
        self.event_burst = event_burst
        self.events_per_second = events_per_second
        self.sockets_per_user = sockets_per_user
        self._users: dict[str, SocketUser] = {}
        self._sockets: Counter[int] = Counter()
        # Kept after a user's last socket closes until it refills: reconnecting buys nothing.
        self._budgets: dict[int, EventBudget] = {}
        # Sockets per connected admin: an admin with two tabs stays present until both close.
        self._admin_sockets: Counter[int] = Counter()

    def configure(self, event_burst: int, events_per_second: float, sockets_per_user: int) -> None:
        """Set the per-user limits (before the first socket connects)."""
        self.event_burst = event_burst
        self.events_per_second = events_per_second
        self.sockets_per_user = sockets_per_user

    def __len__(self) -> int:
        return len(self._users)

    def has_room_for(self, user_id: int) -> bool:
        """Tell whether `user_id` may open one more socket here."""
        return self._sockets[user_id] < self.sockets_per_user

    def add(self, sid: str, identity: Identity, expires_at: float) -> bool:
        """Remember a socket; tell whether the set of connected admins changed."""
        now = time.monotonic()
        self._forget_refilled_budgets(now)
        budget = self._budgets.get(identity.user_id)
        if budget is None:
            budget = self._budgets[identity.user_id] = EventBudget(
                self.event_burst, self.events_per_second, now)
        self._users[sid] = SocketUser(identity, expires_at, budget)
        self._sockets[identity.user_id] += 1
        if not identity.is_admin:
            return False
        self._admin_sockets[identity.user_id] += 1
        return self._admin_sockets[identity.user_id] == 1

    def sockets_of(self, user_id: int) -> int:
        """Return how many sockets `user_id` holds here."""
        return self._sockets[user_id]

    def _forget_refilled_budgets(self, now: float) -> None:
        for user_id in [user_id for user_id, budget in self._budgets.items()
                        if user_id not in self._sockets and budget.is_full(now)]:
            del self._budgets[user_id]

    def remove(self, sid: str) -> bool:
        """Forget a socket; tell whether the set of connected admins changed."""
        user = self._users.pop(sid, None)
        if user is None:
            return False
        self._sockets[user.identity.user_id] -= 1
        if self._sockets[user.identity.user_id] <= 0:
            del self._sockets[user.identity.user_id]
        if not user.identity.is_admin:
            return False
        admin_id = user.identity.user_id
        self._admin_sockets[admin_id] -= 1
        if self._admin_sockets[admin_id] > 0:
            return False
        del self._admin_sockets[admin_id]
        return True

    def user(self, sid: str, now: float | None = None) -> SocketUser | None:
        """Return who is behind socket `sid`, or None once their token has expired."""
        user = self._users.get(sid)
        now = time.time() if now is None else now
        return user if user is not None and user.expires_at > now else None

    def expired(self, now: float | None = None) -> list[str]:
        """Return the sockets whose access token has expired."""
        now = time.time() if now is None else now
        return [sid for sid, user in self._users.items() if user.expires_at <= now]

    def admin_ids(self) -> list[int]:
        """Return the ids of the administrators with at least one socket here."""
        return sorted(self._admin_sockets)
