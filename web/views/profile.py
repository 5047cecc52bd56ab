"""The signed-in user's own page: who they are, and ending every session they have."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template
from flask_jwt_extended import unset_jwt_cookies
from htmx_flask import make_response, request

from common.auth import current_identity, login_required
from web.accounts import end_all_sessions
from web.extensions import db
from web.models import User

blueprint = Blueprint("profile", __name__)


def _signed_in_user() -> User:
    user = db.session.get(User, current_identity().user_id)
    if user is None:  # deleted a moment ago, before the token's check saw it
        abort(401)
    return user


@blueprint.get("/profile")
@login_required()
def profile():
    """Show the user's name and role, and the button that signs them out everywhere."""
    return render_template("account/profile.html", user=_signed_in_user())


@blueprint.post("/profile/logout-everywhere")
@login_required()
def logout_everywhere():
    """End every session of the user, this one included, in every service and browser."""
    end_all_sessions(_signed_in_user())
    # htmx follows HX-Redirect with a full page load; a plain form post gets a 303.
    response = make_response("", 204, redirect="/login") if request.htmx else redirect("/login", 303)
    unset_jwt_cookies(response)
    return response
