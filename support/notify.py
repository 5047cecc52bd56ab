"""What support tells browsers, through the Socket.IO message queue.

Rooms: a client's `user:<id>` room; on the administrators' side, the assigned
administrator's own room, or the `admins` room while nobody has taken the
conversation. Typing and read receipts go only to the other party.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask

from common.auth import Identity
from common.realtime import ADMINS_ROOM, socketio_emitter, user_room
from common.settings import Settings
from support.models import Conversation, Message


def admin_side_rooms(conversation: Conversation) -> list[str]:
    """Return the rooms that reach the administrators' side of a conversation."""
    if conversation.state == "assigned" and conversation.assigned_admin_id:
        return [user_room(conversation.assigned_admin_id)]
    return [ADMINS_ROOM]


def other_party_rooms(conversation: Conversation, sender: Identity) -> list[str]:
    """Return the rooms of the party that did not send (for typing and read receipts)."""
    if sender.is_admin:
        return [user_room(conversation.client_id)]
    return admin_side_rooms(conversation)


def message_renderer(app: Flask) -> Callable[[Message], str]:
    """Return a function that renders one message as the pages' list item (`support/_message.html`)."""
    template = app.jinja_env.get_template("support/_message.html")  # autoescaped, as every .html
    return lambda message: template.render(message=message)


class Broadcaster:
    """Emit chat events; one emitter per process, shared by threads under a lock."""

    def __init__(self, emitter, render_message: Callable[[Message], str] | None = None):
        self.emitter = emitter
        # The emitter's kombu connection is not thread-safe; bot workers emit too.
        self._lock = threading.Lock()
        self.render_message = render_message

    @classmethod
    def from_settings(cls, settings: Settings, app: Flask | None = None) -> Broadcaster:
        """Return a broadcaster on the shared Socket.IO message queue; with `app`, messages go rendered."""
        return cls(socketio_emitter(settings), message_renderer(app) if app is not None else None)

    def emit(self, event: str, data: dict, rooms: list[str] | None) -> None:
        """Emit `event` once to all of `rooms` (None: to every connected socket).

        One emit to a list of rooms reaches a socket in several of them only once.
        """
        with self._lock:
            self.emitter.emit(event, data, room=rooms, namespace="/")

    def message(self, conversation: Conversation, message: Message) -> None:
        """Deliver a new message to the client and the administrators' side, rendered once for all."""
        data = {**message.event(), "state": conversation.state}
        if self.render_message is not None:
            data["html"] = self.render_message(message)
        rooms = [user_room(conversation.client_id), *admin_side_rooms(conversation)]
        if message.sender_role == "admin" and user_room(message.sender_id) not in rooms:
            # An admin stepping into a colleague's conversation still sees their own message.
            rooms.append(user_room(message.sender_id))
        self.emit("chat:message", data, rooms)

    def conversation(self, conversation: Conversation) -> None:
        """Tell every inbox and the client that the conversation's row changed."""
        self.emit("chat:conversation", conversation.row(), [ADMINS_ROOM, user_room(conversation.client_id)])

    def typing(self, conversation: Conversation, sender: Identity) -> None:
        """Show the other party that `sender` is typing."""
        data = {"conversation_id": conversation.id, "sender_id": sender.user_id,
                "sender_role": sender.role, "sender_name": sender.name}
        self.emit("chat:typing", data, other_party_rooms(conversation, sender))

    def read(self, conversation: Conversation, reader: Identity, message_id: int) -> None:
        """Tell the other party how far `reader` has read (the "Seen" receipt)."""
        data = {"conversation_id": conversation.id, "message_id": message_id,
                "reader_id": reader.user_id, "reader_role": reader.role}
        self.emit("chat:read", data, other_party_rooms(conversation, reader))

    def presence(self, admins_online: bool) -> None:
        """Tell every browser whether any administrator is online."""
        self.emit("presence", {"admins_online": admins_online}, None)

    def error(self, user_id: int, client_message_id: str | None, reason: str) -> None:
        """Tell a sender that their message was refused, and why."""
        self.emit("chat:error", {"client_message_id": client_message_id, "reason": reason},
                  [user_room(user_id)])
