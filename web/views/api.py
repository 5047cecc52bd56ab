"""The JSON API beside the pages (documented in web/openapi.json, served at /api/openapi.json).

Accepts the access token as a Bearer header or as the cookie (then with the CSRF header).
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from common.auth import current_identity, forbidden, login_required
from web.accounts import RuleViolation, create_user, delete_user, search_users, update_user
from web.extensions import db
from web.inventory import (
    assign_device,
    create_device,
    delete_device,
    search_devices,
    update_device,
)
from web.models import Device, User
from web.openapi import gateway_document
from web.validation import ConflictingInput, ValidationError

blueprint = Blueprint("api", __name__, url_prefix="/api")
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"
API_PAGE_SIZE = 100
MAX_PAGE = 100_000
# What each body may hold (web/openapi.json: additionalProperties false); anything else is a 422.
NEW_USER_FIELDS = ("email", "name", "role", "password")
USER_CHANGE_FIELDS = ("name", "role", "password")
DEVICE_FIELDS = ("name", "description", "address", "max_hourly_kwh")


class BadRequest(Exception):
    """A request the API cannot read (e.g. a body that is not a JSON object)."""


@blueprint.errorhandler(ValidationError)
def invalid_input(error: ValidationError):
    """Answer bad input with 422 and one message per field."""
    db.session.rollback()
    return jsonify(error="invalid input", fields=error.errors), 422


@blueprint.errorhandler(ConflictingInput)
def conflicting_input(error: ConflictingInput):
    """Answer valid input that stored data refuses with 409 and one message per field."""
    db.session.rollback()
    return jsonify(error="conflict", fields=error.errors), 409


@blueprint.errorhandler(RuleViolation)
def rule_violation(error: RuleViolation):
    """Answer a forbidden change with 409 and the reason."""
    db.session.rollback()
    return jsonify(error=str(error)), 409


@blueprint.errorhandler(BadRequest)
def bad_request(error: BadRequest):
    """Answer an unreadable request with 400."""
    return jsonify(error=str(error)), 400


def json_body(fields: tuple[str, ...] | None = None) -> dict:
    """Return the request's JSON object, or raise BadRequest; with `fields`, refuse any other key (422)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object (Content-Type: application/json)")
    unknown = sorted(set(body) - set(fields)) if fields is not None else []
    if unknown:
        raise ValidationError({name[:100]: "unknown field" for name in unknown[:10]})
    return body


def page_argument() -> int:
    """Return `?page=` (1 when absent or empty); 400 unless a whole number from 1 to MAX_PAGE."""
    value = request.args.get("page", "")
    if value == "":
        return 1
    # isdigit() alone also takes "²"; the length keeps int() from ever seeing a huge string.
    if not (value.isascii() and value.isdigit() and len(value) <= len(str(MAX_PAGE))) \
            or not 1 <= int(value) <= MAX_PAGE:
        raise BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}")
    return int(value)


def user_json(user: User) -> dict:
    """Return a user as the API shows it."""
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role,
            "created_at": user.created_at.isoformat() + "Z"}


def device_json(device: Device) -> dict:
    """Return a device as the API shows it."""
    return {"id": device.id, "name": device.name, "description": device.description,
            "address": device.address, "max_hourly_kwh": float(device.max_hourly_kwh),
            "owner_id": device.owner_id}


def page_json(listing, render) -> dict:
    """Return one page of a listing with its paging facts."""
    return {"items": [render(item) for item in listing.items], "page": listing.page,
            "pages": listing.pages, "total": listing.total}


@blueprint.get("/openapi.json")
def openapi():
    """Serve the description of every JSON route behind the gateway (web/openapi.py)."""
    return jsonify(gateway_document())


@blueprint.get("/me")
@login_required()
def me():
    """Return the signed-in user, with their own preferences."""
    user = db.session.get(User, current_identity().user_id)
    if user is None:
        return jsonify(error="user no longer exists"), 401
    return jsonify({**user_json(user), "timezone": user.timezone, "notify_browser": user.notify_browser})


@blueprint.get("/users")
@login_required(role="admin")
def list_users():
    """List users (search with `q`, page with `page`)."""
    listing = search_users(request.args.get("q", ""), page_argument(), API_PAGE_SIZE)
    return jsonify(page_json(listing, user_json))


@blueprint.post("/users")
@login_required(role="admin")
def add_user():
    """Create a user."""
    user = create_user(json_body(NEW_USER_FIELDS), current_app.extensions["ems_password_hasher"])
    return jsonify(user_json(user)), 201


@blueprint.get("/users/<int:user_id>")
@login_required(role="admin")
def get_user(user_id: int):
    """Return one user."""
    return jsonify(user_json(db.get_or_404(User, user_id)))


@blueprint.route("/users/<int:user_id>", methods=["PUT", "PATCH"])
@login_required(role="admin")
def change_user(user_id: int):
    """Change a user's name, role or password."""
    user = db.get_or_404(User, user_id)
    body = json_body(USER_CHANGE_FIELDS)
    update_user(user, body, current_identity(), current_app.extensions["ems_password_hasher"])
    return jsonify(user_json(user))


@blueprint.delete("/users/<int:user_id>")
@login_required(role="admin")
def remove_user(user_id: int):
    """Delete a user; their devices become unassigned."""
    unassigned = delete_user(db.get_or_404(User, user_id), current_identity())
    return jsonify(deleted=user_id, unassigned_devices=unassigned)


@blueprint.get("/devices")
@login_required()
def list_devices():
    """List devices: every device for an administrator, only their own for a client."""
    identity = current_identity()
    owner = None if identity.is_admin else identity.user_id
    listing = search_devices(request.args.get("q", ""), page_argument(), API_PAGE_SIZE, owner_id=owner)
    return jsonify(page_json(listing, device_json))


@blueprint.post("/devices")
@login_required(role="admin")
def add_device():
    """Create a device (optionally with `owner_id`)."""
    return jsonify(device_json(create_device(json_body((*DEVICE_FIELDS, "owner_id"))))), 201


@blueprint.get("/devices/<uuid:device_id>")
@login_required()
def get_device(device_id):
    """Return one device (a client only their own)."""
    device = db.get_or_404(Device, str(device_id))
    identity = current_identity()
    if not identity.is_admin and device.owner_id != identity.user_id:
        return forbidden()
    return jsonify(device_json(device))


@blueprint.route("/devices/<uuid:device_id>", methods=["PUT", "PATCH"])
@login_required(role="admin")
def change_device(device_id):
    """Change a device's name, description, address or limit."""
    device = db.get_or_404(Device, str(device_id))
    return jsonify(device_json(update_device(device, json_body(DEVICE_FIELDS))))


@blueprint.delete("/devices/<uuid:device_id>")
@login_required(role="admin")
def remove_device(device_id):
    """Delete a device."""
    delete_device(db.get_or_404(Device, str(device_id)))
    return jsonify(deleted=str(device_id))


@blueprint.put("/devices/<uuid:device_id>/owner")
@login_required(role="admin")
def assign(device_id):
    """Assign a device to a client: `{"user_id": n}`."""
    device = db.get_or_404(Device, str(device_id))
    body = json_body()
    if body.get("user_id") in (None, ""):
        raise ValidationError({"user_id": "user_id is required (DELETE the owner to unassign)"})
    return jsonify(device_json(assign_device(device, body["user_id"])))


@blueprint.delete("/devices/<uuid:device_id>/owner")
@login_required(role="admin")
def unassign(device_id):
    """Unassign a device."""
    return jsonify(device_json(assign_device(db.get_or_404(Device, str(device_id)), None)))


def route_document() -> dict:
    """Return the OpenAPI document as a dict (tests compare it with the routes)."""
    return json.loads(OPENAPI_PATH.read_text())
