"""What the page and API routes share: access checks, the app's broadcaster, state changes."""

from __future__ import annotations

import logging
import threading

from flask import abort, current_app

from common.auth import Identity
from common.logs import log_event
from support import chat, ratings
from support.extensions import db
from support.models import Conversation
from support.notify import Broadcaster

logger = logging.getLogger(__name__)
_broadcaster_lock = threading.Lock()
STATE_LABELS = {
    "bot": "Assistant",
    "waiting": "Waiting for an administrator",
    "assigned": "With an administrator",
    "resolved": "Resolved",
}


def broadcaster() -> Broadcaster:
    """Return this app's broadcaster, created on first use (one per process)."""
    with _broadcaster_lock:
        if "support_broadcaster" not in current_app.extensions:
            current_app.extensions["support_broadcaster"] = Broadcaster.from_settings(
                current_app.config["EMS_SETTINGS"])
        return current_app.extensions["support_broadcaster"]


def accessible_conversation(identity: Identity, conversation_id: int, lock: bool = False) -> Conversation:
    """Return the conversation if `identity` may see it; 404 if missing, 403 if not theirs."""
    conversation = db.session.get(Conversation, conversation_id, with_for_update=lock)
    if conversation is None:
        abort(404, description="conversation not found")
    if not chat.can_access(identity, conversation):
        abort(403, description="this conversation belongs to another client")
    return conversation


def parse_before(raw: str | None) -> int | None:
    """Return the `before` cursor of a history request, or 400."""
    if raw in (None, ""):
        return None
    try:
        return chat.positive_id(raw, "before")
    except chat.Rejected as error:
        abort(400, description=str(error))


def parse_limit(raw: str | None) -> int:
    """Return the `limit` of a history request (chat.HISTORY_PAGE by default), or 400."""
    if raw in (None, ""):
        return chat.HISTORY_PAGE
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= chat.MAX_HISTORY_PAGE:
        abort(400, description=f"limit must be a whole number from 1 to {chat.MAX_HISTORY_PAGE}")
    return int(raw)


def change_state(admin: Identity, conversation_id: int, action: str) -> Conversation:
    """Take or resolve a conversation as `admin`, commit, and tell the browsers."""
    conversation = accessible_conversation(admin, conversation_id, lock=True)
    if action == "take":
        chat.assign(conversation, admin)
    elif action == "resolve":
        ratings.record_resolution(conversation, admin)  # the episode, for the stats and the client's rating
        chat.resolve(conversation)
    else:
        abort(400, description="unknown action")
    db.session.commit()
    log_event(logger, "support.conversation_" + action, conversation_id=conversation.id,
              admin_id=admin.user_id)
    broadcaster().conversation(conversation)
    return conversation


def client_conversation(client: Identity, timezone_name: str | None) -> Conversation:
    """Return the client's conversation (created on first visit), remembering their time zone."""
    conversation = chat.conversation_for_client(client)
    if timezone_name and conversation.client_timezone != timezone_name:
        conversation.client_timezone = timezone_name[:64]
    db.session.commit()
    return conversation
