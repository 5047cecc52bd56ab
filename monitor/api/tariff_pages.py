"""The administrator's tariffs page under /monitor/tariffs: list, add, delete one not started yet.

Tariffs live in the monitor database, beside the hourly totals they price; the
monitor API serves their page, so no other service needs them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, render_template, request
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict

from common.auth import login_required
from common.pages import viewer_timezone
from monitor.api.access import database
from monitor.tariffs import (
    BAND_ROWS,
    WEEKDAY_NAMES,
    TariffInvalid,
    check_against,
    delete_future_tariff,
    insert_tariff,
    load_tariffs,
    parse_tariff,
    price_text,
)

blueprint = Blueprint("monitor_tariffs", __name__, url_prefix="/monitor/tariffs")
blueprint.add_app_template_filter(price_text, "price")


def render_tariffs(status: int = 200, form=None, errors=None, message: str | None = None):
    """Render the tariffs page, or only its section for htmx."""
    with database() as connection:
        book = load_tariffs(connection)
    now = datetime.now(UTC)
    context = {"tariffs": list(reversed(book.tariffs)), "in_force": book.in_force(now), "now": now,
               "form": form or MultiDict({"time_zone": viewer_timezone().key,
                                          "currency": book.currency or ""}),
               "errors": errors or {}, "message": message, "band_rows": range(1, BAND_ROWS + 1),
               "weekday_names": WEEKDAY_NAMES}
    template = "monitor/_tariffs.html" if request.htmx else "monitor/tariffs.html"
    return render_template(template, **context), status


@blueprint.get("")
@login_required(role="admin")
def tariffs_page():
    """Show every tariff, the one in force, and the form to add one."""
    return render_tariffs()


@blueprint.post("")
@login_required(role="admin")
def create_tariff():
    """Add a tariff from the form; answer with the section, with the form's errors if refused."""
    try:
        tariff = parse_tariff(request.form)
        with database() as connection:
            check_against(tariff, load_tariffs(connection), datetime.now(UTC))
            insert_tariff(connection, tariff)
            connection.commit()
    except TariffInvalid as refused:
        return render_tariffs(422, form=request.form, errors=refused.errors)
    except IntegrityError:  # another administrator saved a tariff with the same start meanwhile
        return render_tariffs(422, form=request.form,
                              errors={"valid_from": "another tariff starts at that moment; delete it first"})
    return render_tariffs(201, message=f"Tariff {tariff.name} saved: it applies from "
                                       f"{tariff.valid_from.isoformat()} ({tariff.zone.key}).")


@blueprint.post("/<int:tariff_id>/delete")
@login_required(role="admin")
def delete_tariff(tariff_id: int):
    """Delete a tariff that has not started yet (one in force or past priced shown costs: 409)."""
    with database() as connection:
        if tariff_id not in {tariff.id for tariff in load_tariffs(connection).tariffs}:
            abort(404, description="no such tariff")
        deleted = delete_future_tariff(connection, tariff_id, datetime.now(UTC))
        connection.commit()
    if not deleted:
        abort(409, description="only a tariff that has not started yet can be deleted")
    return render_tariffs(message="Tariff deleted.")
