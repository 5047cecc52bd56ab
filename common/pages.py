"""What every page-serving service (web, support, monitor API) shares: the page
layout, htmx-flask, the viewer's identity in templates, and the error pages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, render_template, request
from flask_jwt_extended import verify_jwt_in_request
from htmx_flask import Htmx
from jinja2 import ChoiceLoader, FileSystemLoader

from common.auth import Identity, current_identity, wants_json

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# The browser reports its IANA time zone in this cookie (set by static/js/ems.js).
TIMEZONE_COOKIE = "tz"


def viewer_timezone() -> ZoneInfo:
    """Return the viewer's time zone: `?tz=`, else the browser's cookie, else UTC."""
    # The browser stores the name URL-encoded ("Europe%2FBucharest").
    name = request.args.get("tz") or unquote(request.cookies.get(TIMEZONE_COOKIE, "")) or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def viewer() -> Identity | None:
    """Return the identity of the current request's valid token, or None."""
    try:
        if verify_jwt_in_request(optional=True) is None:
            return None
        return current_identity()
    except Exception:  # noqa: BLE001 - an expired or bad token simply means "anonymous" here
        return None


def init_pages(app: Flask) -> None:
    """Give `app` the shared layout, htmx support, `viewer` in templates and error pages."""
    Htmx(app)
    app.jinja_loader = ChoiceLoader([app.jinja_loader, FileSystemLoader(TEMPLATES_DIR)])
    app.context_processor(lambda: {"viewer": viewer()})

    def error_page(error):
        if wants_json():
            return {"error": error.description}, error.code
        return render_template("error.html", error=error), error.code

    for status in (400, 403, 404, 405, 409, 413, 422, 429):
        app.register_error_handler(status, error_page)
