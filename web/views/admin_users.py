"""Administration of users: list with search and pages, create, inline edit, delete, sign-up switch."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for
from htmx_flask import request

from common.auth import current_identity, login_required
from web.accounts import RuleViolation, create_user, delete_user, search_users, update_user
from web.extensions import db
from web.models import User
from web.portal_settings import set_signup_enabled, signup_enabled
from web.validation import ValidationError, parse_page
from web.views.fragments import render_fragment, toast_only

blueprint = Blueprint("admin_users", __name__, url_prefix="/admin")
USERS_CHANGED = "users-changed"


def _listing():
    return search_users(request.args.get("q", ""), parse_page(request.args.get("page")))


@blueprint.get("/users")
@login_required(role="admin")
def users():
    """Show the users page, or only its table for htmx (search, pages, refresh)."""
    listing, query = _listing(), request.args.get("q", "")
    if request.htmx and request.htmx.target == "users-table":
        return render_template("admin/_users_table.html", users=listing, q=query)
    return render_template("admin/users.html", users=listing, q=query, form={}, errors={},
                           signup_open=signup_enabled())


@blueprint.post("/users")
@login_required(role="admin")
def create():
    """Create a user from the form; answer with a fresh form, or the form with its errors."""
    try:
        user = create_user(request.form, current_app.extensions["ems_password_hasher"])
    except ValidationError as error:
        return render_fragment("admin/_user_create_form.html", 422, form=request.form, errors=error.errors)
    return render_fragment("admin/_user_create_form.html", 201, form={}, errors={},
                           toast=f"User {user.name} created.", trigger=USERS_CHANGED)


@blueprint.get("/users/<int:user_id>")
@login_required(role="admin")
def row(user_id: int):
    """Show one user's table row (used to cancel an edit)."""
    user = db.get_or_404(User, user_id)
    if not request.htmx:
        return redirect(url_for("admin_users.users", q=user.email))
    return render_template("admin/_user_row.html", user=user)


@blueprint.get("/users/<int:user_id>/edit")
@login_required(role="admin")
def edit(user_id: int):
    """Show one user's row as an inline form."""
    return render_template("admin/_user_edit_row.html", user=db.get_or_404(User, user_id), errors={},
                           form={})


@blueprint.put("/users/<int:user_id>")
@login_required(role="admin")
def update(user_id: int):
    """Save an inline edit; errors come back in the row itself."""
    user = db.get_or_404(User, user_id)
    try:
        update_user(user, request.form, current_identity(), current_app.extensions["ems_password_hasher"])
    except ValidationError as error:
        db.session.rollback()
        return render_fragment("admin/_user_edit_row.html", 422, user=user, form=request.form,
                               errors=error.errors)
    except RuleViolation as error:
        db.session.rollback()
        return render_fragment("admin/_user_edit_row.html", 409, user=user, form=request.form,
                               errors={"role": str(error)})
    return render_fragment("admin/_user_row.html", user=user, toast=f"User {user.name} saved.")


@blueprint.delete("/users/<int:user_id>")
@login_required(role="admin")
def delete(user_id: int):
    """Delete a user (their devices become unassigned); the row disappears."""
    user = db.get_or_404(User, user_id)
    name = user.name
    try:
        unassigned = delete_user(user, current_identity())
    except RuleViolation as error:
        db.session.rollback()
        return toast_only(f"Not deleted: {error}.", 409)
    note = f" {unassigned} device(s) are now unassigned." if unassigned else ""
    return render_fragment("", toast=f"User {name} deleted.{note}")


@blueprint.put("/settings/signup")
@login_required(role="admin")
def signup_switch():
    """Open or close client sign-up."""
    set_signup_enabled(request.form.get("enabled") == "true")
    return render_fragment("admin/_signup_switch.html", signup_open=signup_enabled(),
                           toast="Sign-up is now " + ("open." if signup_enabled() else "closed."))
