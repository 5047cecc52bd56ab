"""Administration of devices: list with search and pages, create, inline edit, delete, assignment."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from htmx_flask import request

from common.auth import login_required
from web.accounts import clients
from web.extensions import db
from web.inventory import assign_device, create_device, delete_device, search_devices, update_device
from web.models import Device
from web.validation import ValidationError, parse_page
from web.views.fragments import render_fragment

blueprint = Blueprint("admin_devices", __name__, url_prefix="/admin")
DEVICES_CHANGED = "devices-changed"


@blueprint.get("/devices")
@login_required(role="admin")
def devices():
    """Show the devices page, or only its table for htmx (search, pages, refresh)."""
    query = request.args.get("q", "")
    listing = search_devices(query, parse_page(request.args.get("page")))
    if request.htmx and request.htmx.target == "devices-table":
        return render_template("admin/_devices_table.html", devices=listing, q=query, clients=clients())
    return render_template("admin/devices.html", devices=listing, q=query, clients=clients(), form={},
                           errors={})


@blueprint.post("/devices")
@login_required(role="admin")
def create():
    """Create a device from the form; answer with a fresh form, or the form with its errors."""
    try:
        device = create_device(request.form)
    except ValidationError as error:
        db.session.rollback()
        return render_fragment("admin/_device_create_form.html", 422, form=request.form, errors=error.errors,
                               clients=clients())
    return render_fragment("admin/_device_create_form.html", 201, form={}, errors={}, clients=clients(),
                           toast=f"Device {device.name} created.", trigger=DEVICES_CHANGED)


@blueprint.get("/devices/<uuid:device_id>")
@login_required(role="admin")
def row(device_id):
    """Show one device's table row (used to cancel an edit)."""
    device = db.get_or_404(Device, str(device_id))
    if not request.htmx:
        return redirect(url_for("admin_devices.devices", q=device.name))
    return render_template("admin/_device_row.html", device=device, clients=clients())


@blueprint.get("/devices/<uuid:device_id>/edit")
@login_required(role="admin")
def edit(device_id):
    """Show one device's row as an inline form."""
    return render_template("admin/_device_edit_row.html", device=db.get_or_404(Device, str(device_id)),
                           form={}, errors={})


@blueprint.put("/devices/<uuid:device_id>")
@login_required(role="admin")
def update(device_id):
    """Save an inline edit; errors come back in the row itself."""
    device = db.get_or_404(Device, str(device_id))
    try:
        update_device(device, request.form)
    except ValidationError as error:
        db.session.rollback()
        return render_fragment("admin/_device_edit_row.html", 422, device=device, form=request.form,
                               errors=error.errors)
    return render_fragment("admin/_device_row.html", device=device, clients=clients(),
                           toast=f"Device {device.name} saved.")


@blueprint.put("/devices/<uuid:device_id>/owner")
@login_required(role="admin")
def assign(device_id):
    """Assign the device to the chosen client, or unassign it for an empty choice."""
    device = db.get_or_404(Device, str(device_id))
    try:
        assign_device(device, request.form.get("owner_id"))
    except ValidationError as error:
        db.session.rollback()
        return render_fragment("admin/_device_row.html", 422, device=device, clients=clients(),
                               toast="Not assigned: " + "; ".join(error.errors.values()), toast_kind="error")
    owner = device.owner
    message = f"{device.name} assigned to {owner.name}." if owner else f"{device.name} unassigned."
    return render_fragment("admin/_device_row.html", device=device, clients=clients(), toast=message)


@blueprint.delete("/devices/<uuid:device_id>")
@login_required(role="admin")
def delete(device_id):
    """Delete a device; the row disappears."""
    device = db.get_or_404(Device, str(device_id))
    name = device.name
    delete_device(device)
    return render_fragment("", toast=f"Device {name} deleted.")
