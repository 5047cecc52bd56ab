"""The signed-in user's own page: who they are, their preferences, and ending every session they have."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template
from flask_jwt_extended import get_jwt, set_access_cookies, unset_jwt_cookies
from htmx_flask import make_response, request

from common.auth import current_identity, login_required
from web.accounts import end_all_sessions
from web.extensions import db
from web.models import User
from web.preferences import change_password, timezone_names, update_preferences
from web.sessions import SESSION_CLAIM, TooManyAttempts, access_token_for, client_address, start_session
from web.validation import ValidationError

blueprint = Blueprint("profile", __name__)


def _signed_in_user() -> User:
    user = db.session.get(User, current_identity().user_id)
    if user is None:  # deleted a moment ago, before the token's check saw it
        abort(401)
    return user


@blueprint.get("/profile")
@login_required()
def profile():
    """Show the user's name, role and preferences, and the button that signs them out everywhere."""
    return render_template("account/profile.html", user=_signed_in_user(), timezones=timezone_names(),
                           form={}, errors={}, saved=False)


def _preferences_form(user: User, form=None, errors=None, saved: bool = False) -> str:
    return render_template("account/_preferences.html", user=user, timezones=timezone_names(),
                           form=form or {}, errors=errors or {}, saved=saved)


@blueprint.post("/profile/preferences")
@login_required()
def save_preferences():
    """Save name, time zone and notification opt-in; this browser's token carries the new zone at once."""
    user, form = _signed_in_user(), request.form
    try:
        update_preferences(user, form)
    except ValidationError as error:
        return _preferences_form(user, form, error.errors), 422
    response = make_response(_preferences_form(user, saved=True))
    # Other browsers of the user get the new zone at their next silent refresh (at most
    # the access token's lifetime); the sessions themselves go on.
    set_access_cookies(response, access_token_for(user, get_jwt().get(SESSION_CLAIM)))
    return response


@blueprint.post("/profile/logout-everywhere")
@login_required()
def logout_everywhere():
    """End every session of the user, this one included, in every service and browser."""
    end_all_sessions(_signed_in_user())
    # htmx follows HX-Redirect with a full page load; a plain form post gets a 303.
    response = make_response("", 204, redirect="/login") if request.htmx else redirect("/login", 303)
    unset_jwt_cookies(response)
    return response


@blueprint.post("/profile/password")
@login_required()
def save_password():
    """Change the password (the current one required); every session ends, this browser starts a new one."""
    user = _signed_in_user()
    try:
        change_password(user, request.form, current_app.extensions["ems_password_hasher"], client_address())
    except TooManyAttempts:
        page = render_template("account/_password.html", errors={}, error="Too many attempts: wait a minute.")
        return page, 429, {"Retry-After": "60"}
    except ValidationError as error:
        return render_template("account/_password.html", errors=error.errors), 422
    answer = make_response(render_template("account/_password.html", errors={}, saved=True))
    return start_session(answer, user)
