"""Small helpers for htmx answers: fragments with a toast, and the viewer's identity."""

from __future__ import annotations

from flask import render_template
from htmx_flask import make_response


def render_fragment(template: str, status: int = 200, toast: str | None = None, toast_kind: str = "success",
                    trigger: str | None = None, reswap: str | None = None, **context):
    """Render a fragment, optionally with an out-of-band toast and an htmx event for other regions."""
    body = render_template(template, **context) if template else ""
    if toast:
        body += render_template("_toast.html", message=toast, kind=toast_kind)
    return make_response(body, status, trigger=trigger, reswap=reswap)


def toast_only(message: str, status: int, kind: str = "error"):
    """Answer with just a toast, leaving the page as it is (e.g. a refused delete)."""
    return render_fragment("", status, toast=message, toast_kind=kind, reswap="none")
