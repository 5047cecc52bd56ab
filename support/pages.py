"""HTMX pages and fragments: the client's chat widget, the admin inbox, the bot rules."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from common.auth import current_identity, login_required
from common.logs import log_event
from common.pages import viewer_timezone
from support import assignment, bot, chat, llm, notes, presence, ratings, rules
from support.extensions import db
from support.models import BotRule
from support.views import (
    STATE_LABELS,
    accessible_conversation,
    broadcaster,
    change_state,
    client_conversation,
    parse_before,
)

blueprint = Blueprint("support", __name__, url_prefix="/support")
logger = logging.getLogger(__name__)


@blueprint.app_context_processor
def state_labels():
    return {"state_labels": STATE_LABELS}


@blueprint.get("/widget")
@login_required(role="client")
def widget():
    """Render the client's chat widget: recent history, state, presence."""
    client = current_identity()
    conversation = client_conversation(client, viewer_timezone().key)
    messages, has_earlier = chat.history(conversation)
    return render_template("support/widget.html", conversation=conversation, messages=messages,
                           has_earlier=has_earlier, viewer_identity=client,
                           seen_id=chat.seen_up_to(conversation, client),
                           unread=chat.unread_count(conversation, client),
                           admins_online=presence.admins_online(),
                           rating_due=ratings.pending_rating(conversation))


@blueprint.get("/conversations/<int:conversation_id>/messages")
@login_required()
def earlier_messages(conversation_id: int):
    """Render the page of messages before the `before` cursor ("Load earlier")."""
    conversation = accessible_conversation(current_identity(), conversation_id)
    messages, has_earlier = chat.history(conversation, before=parse_before(request.args.get("before")))
    return render_template("support/_messages.html", conversation=conversation, messages=messages,
                           has_earlier=has_earlier)


@blueprint.get("/inbox")
@login_required(role="admin")
def inbox():
    """Render the admin support inbox, with one conversation open when `?c=` is given."""
    admin = current_identity()
    assignment.remember_admin(admin)
    db.session.commit()
    selected = request.args.get("c", type=int)
    context = _conversation_context(admin, selected) if selected else {}
    return render_template("support/inbox.html", inbox=_inbox_page(), views=assignment.VIEWS,
                           selected_id=selected, **context)


@blueprint.get("/inbox/list")
@login_required(role="admin")
def inbox_list():
    """Render the inbox's list of conversations in the chosen view and search (refreshed live)."""
    return render_template("support/_inbox_list.html", inbox=_inbox_page(),
                           selected_id=request.args.get("selected", type=int))


def _inbox_page() -> assignment.InboxPage:
    """Return the inbox page the request asks for (`view`, `q`, `page`)."""
    return assignment.inbox_page(current_identity(), assignment.clean_view(request.args.get("view")),
                                 request.args.get("q", ""), request.args.get("page", 1, type=int) or 1)


@blueprint.get("/conversations/<int:conversation_id>")
@login_required(role="admin")
def conversation(conversation_id: int):
    """Render one conversation for the inbox (the full inbox page without htmx)."""
    if not request.htmx:
        return redirect(url_for("support.inbox", c=conversation_id))
    return render_template("support/_conversation.html",
                           **_conversation_context(current_identity(), conversation_id))


@blueprint.post("/conversations/<int:conversation_id>/<any(take, resolve):action>")
@login_required(role="admin")
def conversation_action(conversation_id: int, action: str):
    """Take or resolve a conversation, then render it again."""
    admin = current_identity()
    change_state(admin, conversation_id, action)
    return render_template("support/_conversation.html", **_conversation_context(admin, conversation_id))


@blueprint.post("/conversations/<int:conversation_id>/assign")
@login_required(role="admin")
def assign(conversation_id: int):
    """Assign the conversation to the administrator chosen in the form, then render it again."""
    admin = current_identity()
    conversation = accessible_conversation(admin, conversation_id, lock=True)
    try:
        assignee = assignment.assign_to(conversation, request.form.get("admin_id", 0, type=int))
    except LookupError as error:
        db.session.rollback()
        abort(422, description=str(error))
    db.session.commit()
    log_event(logger, "support.conversation_assigned", conversation_id=conversation.id,
              admin_id=admin.user_id, assignee_id=assignee.user_id)
    broadcaster().conversation(conversation)
    return render_template("support/_conversation.html", **_conversation_context(admin, conversation_id))


def _conversation_context(admin, conversation_id: int) -> dict:
    selected = accessible_conversation(admin, conversation_id)
    messages, has_earlier = chat.history(selected)
    return {"conversation": selected, "messages": messages, "has_earlier": has_earlier,
            "viewer_identity": admin, "seen_id": chat.seen_up_to(selected, admin),
            # The administrators' tools beside the chat.
            "notes": notes.notes_of(selected), "admins": assignment.known_admins(),
            "resolutions": ratings.resolutions_of(selected)}


@blueprint.get("/rules")
@login_required(role="admin")
def rules_page():
    """Render the bot rules page: the ordered rules, a form to add one, the try box."""
    return render_template("support/rules.html", rules=rules.all_rules(), actions=bot.ACTIONS,
                           errors=[], new_rule_form={})


@blueprint.post("/rules")
@login_required(role="admin")
def create_rule():
    """Add a rule from the form; show the form again with its errors when invalid."""
    record = BotRule(priority=request.form.get("priority", 0, type=int) or 0)
    errors = _apply_form(record)
    if errors:
        return render_template("support/_rule_new.html", actions=bot.ACTIONS, errors=errors,
                               new_rule_form=request.form), 422
    db.session.add(record)
    db.session.commit()
    # The emptied form, and the rules table again (out of band) with the new rule in place.
    return render_template("support/_rule_new.html", actions=bot.ACTIONS, errors=[], new_rule_form={},
                           added=record.name) + render_template("support/_rules_table_oob.html",
                                                                rules=rules.all_rules(), actions=bot.ACTIONS)


@blueprint.post("/rules/<int:rule_id>")
@login_required(role="admin")
def update_rule(rule_id: int):
    """Save an edited rule and render its row again."""
    record = db.get_or_404(BotRule, rule_id)
    errors = _apply_form(record)
    if errors:
        db.session.rollback()
        return render_template("support/_rule.html", rule=record, actions=bot.ACTIONS, errors=errors), 422
    db.session.commit()
    return render_template("support/_rule.html", rule=record, actions=bot.ACTIONS, errors=[])


@blueprint.post("/rules/<int:rule_id>/toggle")
@login_required(role="admin")
def toggle_rule(rule_id: int):
    """Enable or disable a rule."""
    record = db.get_or_404(BotRule, rule_id)
    record.enabled = not record.enabled
    db.session.commit()
    return _rules_table()


@blueprint.post("/rules/<int:rule_id>/move/<any(up, down):direction>")
@login_required(role="admin")
def move_rule(rule_id: int, direction: str):
    """Move a rule one place up or down in the bot's order."""
    rules.move(db.get_or_404(BotRule, rule_id), direction)
    db.session.commit()
    return _rules_table()


@blueprint.post("/rules/try")
@login_required(role="admin")
def try_rules():
    """Show which rule would answer a message."""
    text = request.form.get("text", "")[:2000]
    found = bot.match(text, rules.enabled_rules(), rules.vocabulary()) if text.strip() else None
    return render_template("support/_try_result.html", text=text, match=found,
                           llm_enabled=llm.llm_enabled(current_app.config["EMS_SETTINGS"]))


def _rules_table():
    return render_template("support/_rules_table.html", rules=rules.all_rules(), actions=bot.ACTIONS)


def _apply_form(record: BotRule) -> list[str]:
    form = request.form
    name, answer = form.get("name", "").strip(), form.get("answer", "").strip()
    action = form.get("action", "reply")
    patterns = rules.parse_patterns(form.get("patterns", ""))
    errors = bot.validate_rule(name, patterns, answer, action)
    priority = form.get("priority", "").strip()
    if priority and not priority.lstrip("-").isdigit():
        errors.append("priority must be a whole number")
    duplicate = db.session.scalar(db.select(BotRule).where(BotRule.name == name, BotRule.id != record.id)) \
        if name else None
    if duplicate is not None:
        errors.append("another rule already has this name")
    if errors:
        return errors
    record.name, record.answer, record.action, record.patterns = name, answer, action, patterns
    if priority:
        record.priority = int(priority)
    return []

