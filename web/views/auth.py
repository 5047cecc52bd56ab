"""Sign in, sign out, sign up and token refresh (pages and the API's login)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template
from flask_jwt_extended import (
    get_jwt,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import (
    CSRFError,
    JWTExtendedException,
    NoAuthorizationError,
    RevokedTokenError,
)
from htmx_flask import make_response, request
from jwt import InvalidTokenError

from common.pages import viewer
from web.accounts import create_user
from web.extensions import db
from web.models import ROLE_CLIENT
from web.portal_settings import signup_enabled
from web.preferences import remember_detected_timezone
from web.sessions import (
    SESSION_CLAIM,
    TooManyAttempts,
    access_token_for,
    authenticate,
    client_address,
    cross_site_post,
    revoke_session,
    rotate_refresh_token,
    safe_next,
    start_session,
    too_many_signups,
)
from web.validation import ValidationError

blueprint = Blueprint("auth", __name__)

TOO_MANY_ATTEMPTS = "Too many login attempts. Wait a minute and try again."
TOO_MANY_SIGNUPS = "Too many sign-ups from your network. Try again in an hour."
BAD_CREDENTIALS = "Wrong e-mail or password."
SESSION_ENDED = "refresh refused: this session has ended"


def home_for(user) -> str:
    """Return where a user lands after signing in."""
    return "/admin/devices" if user.role == "admin" else "/"


@blueprint.get("/login")
def login():
    """Show the sign-in form (or go on if already signed in)."""
    current = viewer()
    if current is not None:
        return redirect(safe_next(request.args.get("next"), home_for(current)))
    return render_template("auth/login.html", next=safe_next(request.args.get("next"), ""),
                           signup_open=signup_enabled())


@blueprint.post("/login")
def login_submit():
    """Check the credentials and start a session in cookies."""
    email, target = request.form.get("email", ""), safe_next(request.form.get("next"), "")
    if cross_site_post():
        abort(403)
    try:
        user = authenticate(email, request.form.get("password", ""), client_address())
    except TooManyAttempts:
        return _login_error(email, target, TOO_MANY_ATTEMPTS, 429)
    if user is None:
        return _login_error(email, target, BAD_CREDENTIALS, 401)
    remember_detected_timezone(user, request.form.get("timezone"))
    return start_session(redirect(target or home_for(user), 303), user)


def _login_error(email: str, target: str, message: str, status: int):
    page = render_template("auth/login.html", email=email, next=target, error=message,
                           signup_open=signup_enabled())
    response = make_response(page, status)
    if status == 429:
        response.headers["Retry-After"] = "60"
    return response


@blueprint.post("/logout")
def logout():
    """End the session: revoke its refresh tokens and remove every token cookie."""
    try:
        if verify_jwt_in_request(optional=True) is not None:
            revoke_session(get_jwt().get(SESSION_CLAIM))
            db.session.commit()
    except (CSRFError, NoAuthorizationError):
        raise
    except (InvalidTokenError, JWTExtendedException):
        pass  # an expired or ended session may still sign out (its refresh token is refused anyway)
    # htmx follows HX-Redirect with a full page load; a plain form post gets a 303.
    response = make_response("", 204, redirect="/login") if request.htmx else redirect("/login", 303)
    unset_jwt_cookies(response)
    return response


@blueprint.route("/signup", methods=["GET", "POST"])
def signup():
    """Let a visitor create a client account, unless an administrator closed sign-up."""
    if not signup_enabled():
        return render_template("auth/signup.html", closed=True, form={}), 403
    if request.method == "GET":
        return render_template("auth/signup.html", form={})
    if cross_site_post():
        abort(403)
    form = request.form
    if too_many_signups(client_address()):
        response = make_response(render_template("auth/signup.html", form=form, errors={},
                                                 error=TOO_MANY_SIGNUPS), 429)
        response.headers["Retry-After"] = "3600"
        return response
    errors = {}
    if form.get("password", "") != form.get("password_confirm", ""):
        errors["password_confirm"] = "the passwords do not match"  # noqa: S105 - a message
    try:
        if errors:
            raise ValidationError(errors)
        user = create_user({"email": form.get("email"), "name": form.get("name"),
                            "password": form.get("password"), "role": ROLE_CLIENT},
                           current_app.extensions["ems_password_hasher"])
    except ValidationError as error:
        return render_template("auth/signup.html", form=form, errors=error.errors), 422
    remember_detected_timezone(user, form.get("timezone"))
    return start_session(redirect("/", 303), user)


@blueprint.post("/auth/refresh")
def refresh():
    """Use the refresh cookie once: new access and refresh tokens (role and name read again).

    A refresh token of an ended session, or one used before, is refused and the
    cookies removed; reuse also revokes the whole session (web.sessions).
    """
    try:
        verify_jwt_in_request(refresh=True, locations=["cookies"])
        rotated = rotate_refresh_token(get_jwt())
    except RevokedTokenError:  # the user's sessions were ended, or the user deleted
        rotated = None
    except (JWTExtendedException, InvalidTokenError) as error:
        # Called by scripts (ems.js), never as a page: always answer in JSON.
        return jsonify(error=f"refresh refused: {error}"), 401
    if rotated is None:
        response = jsonify(error=SESSION_ENDED)
        unset_jwt_cookies(response)
        return response, 401
    user, refresh_token, session_id = rotated
    response = jsonify(refreshed=True)
    set_access_cookies(response, access_token_for(user, session_id))
    set_refresh_cookies(response, refresh_token)
    return response


@blueprint.post("/api/auth/login")
def api_login():
    """Return an access token for e-mail and password sent as JSON."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="request body must be a JSON object with email and password"), 400
    try:
        user = authenticate(body.get("email"), body.get("password"), client_address())
    except TooManyAttempts:
        return jsonify(error=TOO_MANY_ATTEMPTS), 429, {"Retry-After": "60"}
    if user is None:
        return jsonify(error=BAD_CREDENTIALS), 401
    return jsonify(access_token=access_token_for(user), token_type="Bearer",  # noqa: S106 - the scheme name
                   expires_in=int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()))
