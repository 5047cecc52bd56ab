"""Pages and htmx fragments under /monitor: device chart, alerts, dashboard, user summary, pipeline.

Each page includes its fragment; for an htmx request the same route answers
with the fragment alone.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, abort, redirect, render_template, request

from common.auth import Identity, current_identity, login_required
from common.pages import viewer_timezone
from monitor import alert_inbox
from monitor.api.access import (
    database,
    day_argument,
    page_argument,
    settings,
    viewable_device,
    visible_devices,
    visible_since,
)
from monitor.api.json_routes import device_filter, mark_own_alert_read
from monitor.charts import bar_chart, sparkline
from monitor.consumption import (
    daily_totals,
    day_bounds,
    day_total,
    days_of,
    devices_of,
    hour_end,
    hourly_for_day,
    hourly_of_devices_between,
    hours_of_day,
    month_range,
    monthly_totals,
    most_hours_over,
    peak_hour,
    projected_day_total,
    today,
    week_range,
)
from monitor.pipeline_status import pipeline_status
from monitor.spending import chart_costs, month_kwh, month_start, today_and_month_costs
from monitor.tariffs import load_tariffs

blueprint = Blueprint("monitor_pages", __name__, url_prefix="/monitor")

VIEWS = ("day", "week", "month", "year")
# htmx fires this event after a read-state change; the unread badge (notifications.js) listens.
ALERTS_CHANGED_HEADER = "HX-Trigger"
ALERTS_CHANGED_EVENT = "ems:alerts-changed"
TREND_DAYS = 7


def chart_context(device, view: str, day):
    """Return what the chart fragment of a device needs for a day, week or month view."""
    zone = viewer_timezone()
    with database() as connection:
        if view == "day":
            hours = hourly_for_day(connection, device.id, day, zone, visible_since(device))
            chart = day_chart(hours, device.max_hourly_kwh)
            return {"chart": chart, "total": day_total(hours), "peak": peak_hour(hours),
                    "previous": day - timedelta(days=1), "next": day + timedelta(days=1)}
        if view == "year":
            return year_context(monthly_totals(connection, device.id, day.year, zone, device.max_hourly_kwh,
                                               visible_since(device)))
        first, last = week_range(day) if view == "week" else month_range(day)
        days = daily_totals(connection, device.id, first, last, zone, visible_since(device))
    # Weekday and date on two lines: a week's seven labels fit a phone's width.
    labels = [d.day.strftime("%a\n%d" if view == "week" else "%d") for d in days]
    chart = bar_chart(labels, [d.kwh for d in days], titles=[d.day.strftime("%a %d %b") for d in days])
    best = max(days, key=lambda d: d.kwh)
    return {"chart": chart, "total": sum(d.kwh for d in days), "peak_day": best if best.kwh > 0 else None,
            "first": first, "last": last,
            "previous": first - timedelta(days=1), "next": last + timedelta(days=1)}


def day_chart(hours, limit):
    """Return the day chart: a bar per hour; both halves of an hour that repeats show their offset."""
    titles = [f"{hour.label} – {hour_end(hour):%H:%M}" for hour in hours]
    repeated = frozenset(index for index, hour in enumerate(hours) if hour.repeated)
    return bar_chart([hour.label for hour in hours], [hour.kwh for hour in hours], limit, titles=titles,
                     keep_labels=repeated)


def year_context(months) -> dict:
    """Return the year chart: 12 monthly totals, the month over the limit most hours highlighted."""
    worst = most_hours_over(months)
    chart = bar_chart([month.label for month in months], [month.kwh for month in months],
                      titles=[month.first.strftime("%B %Y") for month in months])
    # The highlighted bar is the month with the most hours over the limit, not a total over one.
    chart = dataclasses.replace(chart, bars=[dataclasses.replace(bar, over_limit=month is worst)
                                             for bar, month in zip(chart.bars, months, strict=True)])
    best = max(months, key=lambda month: month.kwh)
    first, last = months[0].first, date(months[0].first.year, 12, 31)
    return {"chart": chart, "total": sum(month.kwh for month in months),
            "peak_month": best if best.kwh > 0 else None, "worst_month": worst,
            "first": first, "last": last,
            "previous": first - timedelta(days=1), "next": last + timedelta(days=1)}


@blueprint.get("")
@blueprint.get("/")
@login_required()
def index():
    """Send /monitor to the viewer's starting page: the pipeline for admins, the dashboard for clients."""
    return redirect("/monitor/pipeline" if current_identity().is_admin else "/")


@blueprint.get("/devices/<device_id>")
@login_required()
def device_page(device_id: str):
    """Show a device's consumption chart (day, week, month or year) with navigation."""
    device = viewable_device(device_id)
    view = request.args.get("view", "day")
    if view not in VIEWS:
        abort(400, description=f"view must be one of {', '.join(VIEWS)}")
    day = day_argument()
    context = {"device": device, "view": view, "day": day, "today": today(viewer_timezone()),
               "zone": viewer_timezone(), **chart_context(device, view, day)}
    with database() as connection:  # each bar's cost and the period's (None without a tariff)
        context.update(chart_costs(connection, device.id, view, day, context["zone"], visible_since(device)))
    if request.htmx:
        return render_template("monitor/_device_chart.html", **context)
    return render_template("monitor/device.html", **context)


@blueprint.get("/alerts")
@login_required()
def alerts_page():
    """Show the viewer's alerts, newest first, with read state and paging."""
    device_id = device_filter()
    with database() as connection:
        listing = alert_inbox.list_alerts(connection, current_identity(), page_argument(), device_id)
        unread = alert_inbox.unread_count(connection, current_identity())
    context = {"listing": listing, "device_id": device_id, "unread": unread, "zone": viewer_timezone()}
    if request.htmx and request.htmx.target == "alert-list":
        return render_template("monitor/_alert_list.html", **context)
    return render_template("monitor/alerts.html", **context)


@blueprint.post("/alerts/<int:alert_id>/read")
@login_required()
def read_alert(alert_id: int):
    """Mark one alert read and answer with its updated row."""
    alert = mark_own_alert_read(alert_id)
    html = render_template("monitor/_alert_row.html", alert=alert, zone=viewer_timezone())
    return html, {ALERTS_CHANGED_HEADER: ALERTS_CHANGED_EVENT}


@blueprint.post("/alerts/read-all")
@login_required()
def read_all_alerts():
    """Mark every alert of the viewer read and answer with the refreshed list."""
    with database() as connection:
        alert_inbox.mark_all_read(connection, current_identity())
        connection.commit()
        listing = alert_inbox.list_alerts(connection, current_identity(), page_argument(), device_filter())
    html = render_template("monitor/_alert_list.html", listing=listing, device_id=device_filter(),
                           unread=0, zone=viewer_timezone())
    return html, {ALERTS_CHANGED_HEADER: ALERTS_CHANGED_EVENT}


def device_cards(connection, devices) -> list[dict]:
    """Return today's total and cost, this month's, the limit and a week's trend of each device."""
    zone = viewer_timezone()
    day = today(zone)
    first = day - timedelta(days=TREND_DAYS - 1)
    # One query for every device's week and month (a dashboard shows ten or more devices).
    week = hourly_of_devices_between(connection, [device.id for device in devices],
                                     min(day_bounds(first, zone)[0], month_start(day, zone)),
                                     day_bounds(day, zone)[1])
    # Today's and this month's costs of every device in one query.
    spending = today_and_month_costs(connection, {device.id: visible_since(device) for device in devices},
                                     load_tariffs(connection), day, zone)
    viewer, cards = current_identity(), []
    now = datetime.now(UTC)
    for device in devices:
        since = visible_since(device)
        stored = {hour: kwh for hour, kwh in week[device.id].items()
                  if since is None or hour.replace(tzinfo=None) >= since}
        days = days_of(stored, first, day, zone)
        hours = hours_of_day(stored, day, zone)
        cards.append({"device": device, "today": days[-1].kwh,
                      "trend": sparkline([d.kwh for d in days],
                                         projected_day_total(stored, day, zone, now, TREND_DAYS - 1)),
                      "over_hours": sum(1 for h in hours if h.kwh > device.max_hourly_kwh),
                      "latest_alert": alert_inbox.latest_alert(connection, viewer, device.id),
                      "month_kwh": month_kwh(stored, day, zone), **spending[device.id]})
    return cards


@blueprint.get("/fragments/dashboard")
@login_required()
def dashboard_fragment():
    """Render the viewer's devices with today's total and a 7-day trend (for the portal dashboard)."""
    with database() as connection:
        cards = device_cards(connection, visible_devices(connection, current_identity()))
    return render_template("monitor/_dashboard.html", cards=cards, zone=viewer_timezone())


@blueprint.get("/fragments/users/<int:user_id>/summary")
@login_required()
def user_summary_fragment(user_id: int):
    """Render a client's devices and latest alerts (admins, or the client's own short-lived token)."""
    viewer = current_identity()
    if not viewer.is_admin and viewer.user_id != user_id:
        abort(403, description="not your account")
    with database() as connection:
        cards = device_cards(connection, devices_of(connection, user_id))
        listing = alert_inbox.list_alerts(connection, _as_owner(user_id), page_size=5)
    return render_template("monitor/_user_summary.html", cards=cards, alerts=listing.items,
                           zone=viewer_timezone(), user_id=user_id)


def _as_owner(user_id: int) -> Identity:
    """Return an identity that scopes alert queries to one client."""
    return Identity(user_id=user_id, role="client", name="")


@blueprint.get("/pipeline")
@login_required(role="admin")
def pipeline_page():
    """Show the live pipeline page (its status fragment refreshes every 2 s)."""
    with database() as connection:
        status = pipeline_status(settings(), connection)
    return render_template("monitor/pipeline.html", status=status, zone=viewer_timezone())


@blueprint.get("/fragments/pipeline")
@login_required(role="admin")
def pipeline_fragment():
    """Render the pipeline's current state."""
    with database() as connection:
        status = pipeline_status(settings(), connection)
    return render_template("monitor/_pipeline_status.html", status=status, zone=viewer_timezone())
