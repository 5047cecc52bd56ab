"""Who is connected to this notifier instance, and the presence message for support."""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections import Counter
from datetime import UTC, datetime

from common.auth import Identity


def instance_id() -> str:
    """Return a name for this notifier process that no other process shares."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def utc_now_iso() -> str:
    """Return the current time as an ISO 8601 UTC string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def presence_message(instance: str, admin_ids: list[int], at: str) -> bytes:
    """Encode the presence report: which administrators this instance serves."""
    return json.dumps({"instance": instance, "admin_ids": sorted(admin_ids), "at": at},
                      separators=(",", ":")).encode()


class Connections:
    """The verified identity behind each socket of this instance."""

    def __init__(self):
        self._identities: dict[str, Identity] = {}
        # Sockets per connected admin: an admin with two tabs stays present until both close.
        self._admin_sockets: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self._identities)

    def add(self, sid: str, identity: Identity) -> bool:
        """Remember a socket; tell whether the set of connected admins changed."""
        self._identities[sid] = identity
        if not identity.is_admin:
            return False
        self._admin_sockets[identity.user_id] += 1
        return self._admin_sockets[identity.user_id] == 1

    def remove(self, sid: str) -> bool:
        """Forget a socket; tell whether the set of connected admins changed."""
        identity = self._identities.pop(sid, None)
        if identity is None or not identity.is_admin:
            return False
        self._admin_sockets[identity.user_id] -= 1
        if self._admin_sockets[identity.user_id] > 0:
            return False
        del self._admin_sockets[identity.user_id]
        return True

    def identity(self, sid: str) -> Identity | None:
        """Return the identity verified when socket `sid` connected."""
        return self._identities.get(sid)

    def admin_ids(self) -> list[int]:
        """Return the ids of the administrators with at least one socket here."""
        return sorted(self._admin_sockets)
