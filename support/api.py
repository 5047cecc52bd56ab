"""The JSON API under /api/support: history, read state, inbox, take/resolve, bot trial."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from common.auth import current_identity, login_required
from support import bot, chat, presence, rules
from support.chat import Rejected
from support.extensions import db
from support.views import accessible_conversation, broadcaster, change_state, parse_before, parse_limit

blueprint = Blueprint("support_api", __name__, url_prefix="/api/support")
# Only the start of a longer text is tried against the rules.
MAX_TRIED_TEXT = 2000


@blueprint.get("/conversation")
@login_required(role="client")
def my_conversation():
    """Return the client's conversation with its latest messages and presence."""
    client = current_identity()
    conversation = chat.conversation_of_client(client.user_id)
    if conversation is None:
        return jsonify(conversation=None, messages=[], has_earlier=False,
                       admins_online=presence.admins_online())
    messages, has_earlier = chat.history(conversation)
    return jsonify(conversation=conversation.row(), messages=[m.event() for m in messages],
                   has_earlier=has_earlier, unread=chat.unread_count(conversation, client),
                   seen_up_to=chat.seen_up_to(conversation, client),
                   admins_online=presence.admins_online())


@blueprint.get("/conversations")
@login_required(role="admin")
def conversations():
    """Return the inbox: open conversations with this admin's unread counts."""
    rows = chat.inbox(current_identity(), include_resolved=request.args.get("resolved") == "1")
    return jsonify(conversations=[{**c.row(), "unread": unread} for c, unread in rows])


@blueprint.get("/conversations/<int:conversation_id>/messages")
@login_required()
def messages(conversation_id: int):
    """Return a page of history before the `before` cursor (oldest first)."""
    conversation = accessible_conversation(current_identity(), conversation_id)
    page, has_earlier = chat.history(conversation, before=parse_before(request.args.get("before")),
                                     limit=parse_limit(request.args.get("limit")))
    return jsonify(messages=[m.event() for m in page], has_earlier=has_earlier,
                   next_before=page[0].id if page and has_earlier else None)


@blueprint.post("/conversations/<int:conversation_id>/read")
@login_required()
def mark_read(conversation_id: int):
    """Mark the conversation read up to `message_id` (the HTTP twin of `chat:read`)."""
    reader = current_identity()
    conversation = accessible_conversation(reader, conversation_id)
    payload = request.get_json(silent=True)
    try:
        message_id = chat.positive_id(payload.get("message_id") if isinstance(payload, dict) else None,
                                      "message_id")
        advanced = chat.mark_read(reader, conversation, message_id)
    except Rejected as error:
        db.session.rollback()
        abort(400, description=str(error))
    db.session.commit()
    if advanced:
        broadcaster().read(conversation, reader, message_id)
    return jsonify(last_read_message_id=chat.last_read(conversation.id, reader.user_id))


@blueprint.post("/conversations/<int:conversation_id>/<any(take, resolve):action>")
@login_required(role="admin")
def conversation_action(conversation_id: int, action: str):
    """Take or resolve a conversation."""
    return jsonify(conversation=change_state(current_identity(), conversation_id, action).row())


@blueprint.post("/rules/try")
@login_required(role="admin")
def try_rules():
    """Return which rule would answer `text`."""
    payload = request.get_json(silent=True)
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        abort(400, description='the body must be a JSON object with "text", a string')
    found = bot.match(text[:MAX_TRIED_TEXT], rules.enabled_rules(), rules.vocabulary())
    return jsonify(rule=found.rule.name if found else None, pattern=found.pattern if found else None)
