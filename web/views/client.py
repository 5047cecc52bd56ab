"""The client's pages: the dashboard and "My devices"."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template

from common.auth import current_identity, login_required
from web.inventory import devices_of

blueprint = Blueprint("client", __name__)


@blueprint.get("/")
@login_required()
def dashboard():
    """Show the client's devices with live totals; administrators go to their device list."""
    identity = current_identity()
    if identity.is_admin:
        return redirect("/admin/devices")
    return render_template("client/dashboard.html", devices=devices_of(identity.user_id))


@blueprint.get("/devices")
@login_required()
def my_devices():
    """List the devices assigned to the signed-in client (administrators own none: go to all)."""
    identity = current_identity()
    if identity.is_admin:
        return redirect("/admin/devices")
    return render_template("client/devices.html", devices=devices_of(identity.user_id))
