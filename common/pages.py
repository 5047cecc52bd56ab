"""What every page-serving service (web, support, monitor API) shares: the page
layout, htmx-flask, the viewer's identity in templates, and the error pages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, render_template, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from htmx_flask import Htmx
from jinja2 import ChoiceLoader, FileSystemLoader

from common.auth import TIMEZONE_CLAIM, Identity, current_identity, wants_json

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# The browser reports its IANA time zone in this cookie (set by static/js/ems.js).
TIMEZONE_COOKIE = "tz"


def viewer_timezone() -> ZoneInfo:
    """Return the viewer's zone: `?tz=`, else the token's `tz` claim, else the browser's cookie, else UTC."""
    # The browser stores the cookie's name URL-encoded ("Europe%2FBucharest").
    browser_zone = unquote(request.cookies.get(TIMEZONE_COOKIE, ""))
    for name in (request.args.get("tz"), _token_timezone(), browser_zone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _token_timezone() -> str | None:
    """Return the `tz` claim of the request's valid access token (the user's Profile choice), if any."""
    try:
        if verify_jwt_in_request(optional=True) is None:
            return None
        zone = get_jwt().get(TIMEZONE_CLAIM)
    except Exception:  # noqa: BLE001 - no valid token: no zone from it
        return None
    return zone if isinstance(zone, str) else None


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
    # The layout names the viewer's zone for scripts (toasts, notifications).
    app.jinja_env.globals["viewer_timezone"] = viewer_timezone

    def error_page(error):
        # Keep the exception's own headers: a 405 names the allowed methods in `Allow`.
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        if wants_json():
            return {"error": error.description}, error.code, headers
        return render_template("error.html", error=error), error.code, headers

    for status in (400, 403, 404, 405, 409, 413, 422, 429):
        app.register_error_handler(status, error_page)
