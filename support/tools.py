"""The administrators' tools (canned replies, private notes, assignment, transcript, stats)
and the client's rating of a resolved conversation.

Every route checks the verified token's role; every form posts through htmx, which
sends the CSRF header (static/js/ems.js).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time

from flask import Blueprint, Response, abort, jsonify, render_template, request

from common.auth import current_identity, login_required
from common.logs import log_event
from common.pages import viewer_timezone
from common.realtime import ADMINS_ROOM
from support import canned, chat, notes, ratings, stats, transcript
from support.extensions import db
from support.models import CannedReply
from support.views import accessible_conversation, broadcaster

logger = logging.getLogger(__name__)

blueprint = Blueprint("support_tools", __name__, url_prefix="/support")

# --- canned replies -------------------------------------------------------------------------

@blueprint.get("/canned")
@login_required(role="admin")
def canned_page():
    """Render the canned replies page: the list, each editable, and a form to add one."""
    return render_template("support/canned.html", replies=canned.all_replies(), errors=[], form={},
                           placeholders=canned.PLACEHOLDERS)


@blueprint.post("/canned")
@login_required(role="admin")
def create_canned():
    """Add a canned reply; show the form again with its errors when invalid."""
    reply = CannedReply()
    errors = canned.save(reply, request.form.get("title", ""), request.form.get("text", ""))
    if errors:
        return _canned_list(errors=errors, form=request.form), 422
    db.session.add(reply)
    db.session.commit()
    return _canned_list(added=reply.title)


@blueprint.post("/canned/<int:reply_id>")
@login_required(role="admin")
def update_canned(reply_id: int):
    """Save an edited canned reply."""
    reply = db.get_or_404(CannedReply, reply_id)
    errors = canned.save(reply, request.form.get("title", ""), request.form.get("text", ""))
    if errors:
        db.session.rollback()
        return _canned_list(errors=errors, form=request.form, editing=reply_id), 422
    db.session.commit()
    return _canned_list()


@blueprint.post("/canned/<int:reply_id>/delete")
@login_required(role="admin")
def delete_canned(reply_id: int):
    """Delete a canned reply."""
    db.session.delete(db.get_or_404(CannedReply, reply_id))
    db.session.commit()
    return _canned_list()


def _canned_list(errors=(), form=None, added=None, editing=None):
    return render_template("support/_canned_list.html", replies=canned.all_replies(), errors=list(errors),
                           form=form or {}, added=added, editing=editing, placeholders=canned.PLACEHOLDERS)


@blueprint.get("/conversations/<int:conversation_id>/canned")
@login_required(role="admin")
def canned_for_conversation(conversation_id: int):
    """Return the canned replies filled for this conversation's client (the `/` picker's list)."""
    admin = current_identity()
    return jsonify(replies=canned.filled_for(accessible_conversation(admin, conversation_id), admin))


# --- private notes ----------------------------------------------------------------------------

@blueprint.get("/conversations/<int:conversation_id>/notes")
@login_required(role="admin")
def notes_panel(conversation_id: int):
    """Render a conversation's private notes (refreshed when a colleague adds one)."""
    return _notes_panel(accessible_conversation(current_identity(), conversation_id))


@blueprint.post("/conversations/<int:conversation_id>/notes")
@login_required(role="admin")
def add_note(conversation_id: int):
    """Add a private note, tell the other administrators, and render the notes again."""
    admin = current_identity()
    conversation = accessible_conversation(admin, conversation_id)
    body, error = notes.clean_note(request.form.get("body", ""))
    if error:
        return _notes_panel(conversation, error=error, draft=body), 422
    note = notes.add_note(conversation, admin, body)
    db.session.commit()
    log_event(logger, "support.note_added", conversation_id=conversation.id, admin_id=admin.user_id)
    # Only the administrators' room: a client's room never hears of notes.
    broadcaster().emit("chat:note", {"conversation_id": conversation.id, "note_id": note.id}, [ADMINS_ROOM])
    return _notes_panel(conversation)


def _notes_panel(conversation, **form_state):
    return render_template("support/_notes.html", conversation=conversation,
                           notes=notes.notes_of(conversation), **form_state)


@blueprint.get("/conversations/<int:conversation_id>/ratings")
@login_required(role="admin")
def ratings_panel(conversation_id: int):
    """Render the client's ratings of a conversation (reloaded when the client rates)."""
    conversation = accessible_conversation(current_identity(), conversation_id)
    return render_template("support/_ratings.html", conversation=conversation,
                           resolutions=ratings.resolutions_of(conversation))


# --- transcript -------------------------------------------------------------------------------

@blueprint.get("/conversations/<int:conversation_id>/transcript")
@login_required(role="admin")
def transcript_download(conversation_id: int):
    """Download the conversation's transcript as plain text, times in the viewer's zone."""
    conversation = accessible_conversation(current_identity(), conversation_id)
    text = "".join(transcript.transcript_lines(conversation, transcript.all_messages(conversation),
                                               viewer_timezone()))
    filename = transcript.transcript_filename(conversation)
    return Response(text, mimetype="text/plain", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff"})


# --- stats ------------------------------------------------------------------------------------

@blueprint.get("/stats")
@login_required(role="admin")
def stats_page():
    """Render the Support stats page: the last 14 days in the viewer's zone, as charts."""
    zone = viewer_timezone()
    days = stats.window(datetime.now(zone).date())
    since = datetime.combine(days[0], time(), zone).astimezone(UTC).replace(tzinfo=None)
    summary = stats.summarize(stats.load_episodes(since), days, zone)
    return render_template("support/stats.html", summary=summary, charts=stats.charts(summary), zone=zone)


# --- the client's rating ----------------------------------------------------------------------

@blueprint.get("/rating")
@login_required(role="client")
def rating_prompt():
    """Render the rating prompt when the client's conversation was resolved and not yet rated."""
    conversation = chat.conversation_of_client(current_identity().user_id)
    return render_template("support/_rating.html", rating_due=ratings.pending_rating(conversation))


@blueprint.post("/rating")
@login_required(role="client")
def rate():
    """Store the client's rating of their latest resolution, once."""
    conversation = chat.conversation_of_client(current_identity().user_id)
    if conversation is None:
        abort(404, description="you have no conversation to rate")
    try:
        form = ratings.parse_rating(request.form.get("stars"), request.form.get("comment"))
        resolution = ratings.rate(conversation, request.form.get("resolution_id", 0, type=int), form)
    except ratings.RatingRefused as error:
        db.session.rollback()
        return render_template("support/_rating.html", rating_due=ratings.pending_rating(conversation),
                               error=str(error)), error.status
    db.session.commit()
    log_event(logger, "support.conversation_rated", conversation_id=conversation.id, rating=resolution.rating)
    broadcaster().emit("chat:rating", {"conversation_id": conversation.id}, [ADMINS_ROOM])
    return render_template("support/_rating.html", rating_due=None, thanked=True)
