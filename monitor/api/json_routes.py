"""JSON API under /api/monitor: consumption, export, summary and alerts of the viewer."""

from __future__ import annotations

import csv
import io
from datetime import UTC, timedelta

from flask import Blueprint, Response, abort, jsonify, request

from common.auth import current_identity, login_required
from common.messages import InvalidMessage, parse_uuid
from common.pages import viewer_timezone
from monitor import alert_inbox
from monitor.api.access import (
    database,
    day_argument,
    page_argument,
    range_arguments,
    viewable_device,
    visible_devices,
    visible_since,
)
from monitor.consumption import (
    ZERO,
    daily_totals,
    day_bounds,
    day_total,
    days_of,
    hourly_between,
    hourly_for_day,
    peak_hour,
    today,
)
from monitor.costs import costs_by_day, hour_cost, money_of
from monitor.spending import cost_json, exact_amount, today_and_month_costs
from monitor.tariffs import load_tariffs

blueprint = Blueprint("monitor_api", __name__, url_prefix="/api/monitor")


def alert_json(alert) -> dict:
    """Return an alert as the API shows it."""
    return {"id": alert.id, "device_id": alert.device_id, "device_name": alert.device_name,
            "hour_start": alert.hour_start.replace(tzinfo=UTC).isoformat(),
            "kwh": float(alert.kwh), "limit_kwh": float(alert.limit_kwh), "kind": alert.kind,
            "due_at": alert.due_at.replace(tzinfo=UTC).isoformat() if alert.due_at else None,
            "created_at": alert.created_at.replace(tzinfo=UTC).isoformat(),
            "read": not alert.unread, "url": f"/monitor/devices/{alert.device_id}"}


@blueprint.get("/devices/<device_id>/hourly")
@login_required()
def hourly(device_id: str):
    """Return a day's 23–25 hourly values of a device in the viewer's time zone."""
    device = viewable_device(device_id)
    day, zone = day_argument(), viewer_timezone()
    with database() as connection:
        hours = hourly_for_day(connection, device.id, day, zone, visible_since(device))
        tariffs = load_tariffs(connection)
    peak = peak_hour(hours)
    # Each hour's cost is exact (it sums to the day's); the day's total is rounded once.
    # A list, not a dict by local start: the hour that repeats when clocks go back has the same key.
    costs = [hour_cost(tariffs, hour.start, hour.kwh) for hour in hours]
    return jsonify(
        device_id=device.id, date=day.isoformat(), timezone=zone.key,
        limit_kwh=float(device.max_hourly_kwh), total_kwh=float(day_total(hours)),
        currency=tariffs.currency, total_cost=cost_json(money_of(tariffs, sum(costs, ZERO))),
        peak={"start": peak.start.isoformat(), "kwh": float(peak.kwh)} if peak else None,
        hours=[{"start": hour.start.isoformat(), "label": hour.label, "kwh": float(hour.kwh),
                "cost": exact_amount(cost) if tariffs.currency else None,
                "over_limit": hour.kwh > device.max_hourly_kwh}
               for hour, cost in zip(hours, costs, strict=True)],
    )


@blueprint.get("/devices/<device_id>/daily")
@login_required()
def daily(device_id: str):
    """Return the daily totals of a device between `from` and `to` (default: the last 7 days)."""
    device = viewable_device(device_id)
    first, last = range_arguments(default_days=7)
    zone = viewer_timezone()
    with database() as connection:
        stored = hourly_between(connection, device.id, day_bounds(first, zone)[0], day_bounds(last, zone)[1],
                                visible_since(device))
        tariffs = load_tariffs(connection)
    days = days_of(stored, first, last, zone)
    costs = costs_by_day(tariffs, stored, [day.day for day in days], zone)
    return jsonify(device_id=device.id, timezone=zone.key, **{"from": first.isoformat()}, to=last.isoformat(),
                   currency=tariffs.currency,
                   days=[{"date": day.day.isoformat(), "kwh": float(day.kwh), "cost": cost_json(cost)}
                         for day, cost in zip(days, costs, strict=True)])


@blueprint.get("/devices/<device_id>/export.csv")
@login_required()
def export_csv(device_id: str):
    """Download a device's hourly consumption between `from` and `to` (default: 31 days) as CSV."""
    device = viewable_device(device_id)
    first, last = range_arguments(default_days=31)
    zone = viewer_timezone()
    start, _ = day_bounds(first, zone)
    _, end = day_bounds(last, zone)
    with database() as connection:
        rows = hourly_between(connection, device.id, start, end, visible_since(device))
        tariffs = load_tariffs(connection)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # The cost of each hour is exact (kWh × the price in force then): the column sums to the period's cost.
    writer.writerow(["hour_start_utc", "hour_start_local", "kwh", "cost", "currency"])
    for hour, kwh in sorted(rows.items()):
        cost = exact_amount(hour_cost(tariffs, hour, kwh)) if tariffs.currency else ""
        writer.writerow([hour.isoformat(), hour.astimezone(zone).isoformat(), f"{kwh:.6f}", cost,
                         tariffs.currency or ""])
    filename = f"consumption-{device.id}-{first.isoformat()}-{last.isoformat()}.csv"
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@blueprint.get("/summary")
@login_required()
def summary():
    """Return the viewer's devices with today's and yesterday's totals, costs and their latest alert."""
    viewer, zone = current_identity(), viewer_timezone()
    day = today(zone)
    items = []
    first_of_month = day.replace(day=1)
    first = min(first_of_month, day - timedelta(days=1))  # this month and yesterday
    with database() as connection:
        devices = visible_devices(connection, viewer)
        tariffs = load_tariffs(connection)
        spending = today_and_month_costs(connection, {device.id: visible_since(device) for device in devices},
                                         tariffs, day, zone)
        for device in devices:
            totals = daily_totals(connection, device.id, first, day, zone, visible_since(device))
            latest = alert_inbox.latest_alert(connection, viewer, device.id)
            spent = spending[device.id]
            month_kwh = sum(total.kwh for total in totals if total.day >= first_of_month)
            items.append({"id": device.id, "name": device.name, "limit_kwh": float(device.max_hourly_kwh),
                          "today_kwh": float(totals[-1].kwh), "yesterday_kwh": float(totals[-2].kwh),
                          "month_kwh": float(month_kwh),
                          "today_cost": cost_json(spent["today_cost"]),
                          "month_cost": cost_json(spent["month_cost"]),
                          "latest_alert": alert_json(latest) if latest else None})
    return jsonify(devices=items, timezone=zone.key, currency=tariffs.currency)


def device_filter() -> str | None:
    """Return `?device_id=` as a UUID, or None; 400 if malformed."""
    value = request.args.get("device_id")
    if not value:
        return None
    try:
        return parse_uuid(value)
    except InvalidMessage:
        abort(400, description="device_id must be a UUID")


@blueprint.get("/alerts")
@login_required()
def alerts():
    """Return one page of the viewer's alerts, newest first, optionally for one device."""
    with database() as connection:
        listing = alert_inbox.list_alerts(connection, current_identity(), page_argument(), device_filter())
    return jsonify(items=[alert_json(alert) for alert in listing.items], page=listing.page,
                   pages=listing.pages, total=listing.total)


@blueprint.get("/alerts/unread-count")
@login_required()
def unread_count():
    """Return how many of the viewer's alerts are unread."""
    with database() as connection:
        return jsonify(unread=alert_inbox.unread_count(connection, current_identity()))


def mark_own_alert_read(alert_id: int):
    """Mark an alert of the viewer read; 404 if unknown, 403 if it is not theirs."""
    with database() as connection:
        alert = alert_inbox.find_alert(connection, alert_id)
        if alert is None:
            abort(404, description="no such alert")
        if alert.owner_id != current_identity().user_id:
            abort(403, description="only the device's owner marks its alerts read")
        alert_inbox.mark_read(connection, alert_id)
        connection.commit()
        return alert_inbox.find_alert(connection, alert_id)


@blueprint.post("/alerts/<int:alert_id>/read")
@login_required()
def read_alert(alert_id: int):
    """Mark one of the viewer's alerts read."""
    return jsonify(alert_json(mark_own_alert_read(alert_id)))


@blueprint.post("/alerts/read-all")
@login_required()
def read_all_alerts():
    """Mark every unread alert of the viewer read."""
    with database() as connection:
        marked = alert_inbox.mark_all_read(connection, current_identity())
        connection.commit()
    return jsonify(marked=marked, unread=0)
