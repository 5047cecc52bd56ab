"""Answers from the client's own data: the monitor API's summary of their devices.

Support asks the monitor with a short-lived token minted for that client, so
the monitor's own authorization decides what is visible: never another
client's devices.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from common.auth import Identity, mint_access_token
from common.logs import log_event
from common.settings import Settings
from support.bot import words

logger = logging.getLogger(__name__)
SUMMARY_PATH = "/api/monitor/summary"
MONITOR_TIMEOUT_SECONDS = 3.0
TOKEN_LIFETIME = timedelta(seconds=60)
UTC_ZONE = ZoneInfo("UTC")


class SummaryUnavailable(RuntimeError):
    """The monitor API did not give a usable summary."""


@dataclass(frozen=True)
class DeviceSummary:
    """What support knows about one of the client's devices."""

    id: str
    name: str
    limit_kwh: float | None
    today_kwh: float
    yesterday_kwh: float
    latest_alert: dict | None
    # Costs under the administrator's tariffs (None when there is none), as the monitor rounded them.
    month_kwh: float = 0.0
    today_cost: Decimal | None = None
    month_cost: Decimal | None = None
    currency: str | None = None


def _number(value, default=None):
    """Read a finite JSON number; `default` for anything else (an integer beyond any float included)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return default
    try:
        number = float(value)
    except OverflowError:
        return default
    return number if math.isfinite(number) else default


def _amount(value) -> Decimal | None:
    """Read a cost the monitor sent as a decimal string; None if absent or not a finite amount."""
    if not isinstance(value, str) or len(value) > 30:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _currency(payload) -> str | None:
    currency = payload.get("currency") if isinstance(payload, dict) else None
    return currency if isinstance(currency, str) and len(currency) == 3 and currency.isalpha() else None


def parse_summary(payload) -> list[DeviceSummary]:
    """Read the monitor's summary (a list of devices, or {"devices": [...], "currency": ...})."""
    items = payload.get("devices") if isinstance(payload, dict) else payload
    currency = _currency(payload)
    if not isinstance(items, list):
        raise SummaryUnavailable("summary has no device list")
    devices = []
    for item in items:
        if not isinstance(item, dict):
            continue
        limit = item.get("limit", item.get("max_hourly_kwh", item.get("limit_kwh")))
        alert = item.get("latest_alert")
        devices.append(DeviceSummary(
            id=str(item.get("id", item.get("device_id", ""))),
            name=str(item.get("name") or "Unnamed device")[:80],
            limit_kwh=_number(limit),
            today_kwh=_number(item.get("today_kwh"), 0.0),
            yesterday_kwh=_number(item.get("yesterday_kwh"), 0.0),
            latest_alert=alert if isinstance(alert, dict) else None,
            month_kwh=_number(item.get("month_kwh"), 0.0),
            today_cost=_amount(item.get("today_cost")) if currency else None,
            month_cost=_amount(item.get("month_cost")) if currency else None,
            currency=currency,
        ))
    return devices


def fetch_summary(settings: Settings, client: Identity, timezone: str | None = None) -> list[DeviceSummary]:
    """Return the client's devices from the monitor API, as that client."""
    token = mint_access_token(settings, client, TOKEN_LIFETIME)
    params = {"tz": timezone} if timezone else None
    try:
        response = requests.get(settings.monitor_api_url.rstrip("/") + SUMMARY_PATH, params=params,
                                headers={"Authorization": f"Bearer {token}"},
                                timeout=MONITOR_TIMEOUT_SECONDS)
        response.raise_for_status()
        return parse_summary(response.json())
    except (requests.RequestException, ValueError) as error:
        log_event(logger, "support.summary_unavailable", level=logging.WARNING,
                  client_id=client.user_id, error=type(error).__name__)
        raise SummaryUnavailable(str(error)) from error


def client_zone(name: str | None) -> ZoneInfo:
    """Return the client's time zone as their browser last reported it (UTC when unknown)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _kwh(value: float) -> str:
    return f"{value:.2f} kWh"


def _spend_lines(chosen: list[DeviceSummary], today: bool) -> list[str]:
    """Return what each chosen device cost today or this month, and the sum of those lines."""
    currency = chosen[0].currency
    period = "Today" if today else "This month"
    if currency is None:
        lines = [f"• {d.name}: {_kwh(d.today_kwh if today else d.month_kwh)}" for d in chosen]
        return [*lines, f"No tariff is set yet, so I cannot put a price on it. {period} so far in kWh only."]
    costs = [(d.today_cost if today else d.month_cost) or Decimal(0) for d in chosen]
    lines = [f"• {d.name}: {_kwh(d.today_kwh if today else d.month_kwh)}, {cost} {currency}"
             for d, cost in zip(chosen, costs, strict=True)]
    if len(chosen) == 1:
        return lines
    # The total is the sum of the lines shown, as on a bill.
    return [*lines, f"{period} so far in all: {sum(costs, Decimal(0))} {currency}."]


def mentioned_devices(text: str, devices: list[DeviceSummary]) -> list[DeviceSummary]:
    """Return the devices whose whole name occurs in `text` (word boundaries)."""
    message = " " + " ".join(words(text)) + " "
    return [device for device in devices
            if words(device.name) and f" {' '.join(words(device.name))} " in message]


def _alert_time(alert: dict) -> str:
    return str(alert.get("hour_start") or alert.get("hour") or alert.get("created_at") or "")


def _hour_label(value: str, zone: ZoneInfo) -> str:
    """Return an ISO hour as "26 Nov, 18:00–19:00" in the client's zone (the text itself if unreadable)."""
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        return value or "an hour"
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(zone)
    return f"{start:%d %b}, {start:%H:%M}–{start + timedelta(hours=1):%H:%M}"


def _alert_line(device: DeviceSummary, zone: ZoneInfo) -> str:
    alert = device.latest_alert or {}
    hour = _hour_label(_alert_time(alert), zone)
    kwh = _number(alert.get("kwh"))
    limit = _number(alert.get("limit", alert.get("limit_kwh")), device.limit_kwh)
    if kwh is not None and limit is not None:
        why = f"it used {_kwh(kwh)} in that hour, over its limit of {_kwh(limit)}"
    else:
        why = "its hourly consumption went over its limit"
    return f"{device.name} at {hour}: {why}."


def data_answer(action: str, intro: str, text: str, devices: list[DeviceSummary],
                zone: ZoneInfo = UTC_ZONE) -> str:
    """Compose the answer of a data rule from the client's device summary (times in `zone`)."""
    if not devices:
        return "You have no devices yet. An administrator assigns them to your account."
    chosen = mentioned_devices(text, devices) or devices
    if action == "today":
        lines = [f"• {d.name}: {_kwh(d.today_kwh)}" for d in chosen]
    elif action == "yesterday":
        lines = [f"• {d.name}: {_kwh(d.yesterday_kwh)}" for d in chosen]
    elif action == "limit":
        lines = [f"• {d.name}: " + (f"{_kwh(d.limit_kwh)} per hour" if d.limit_kwh is not None
                                     else "no limit set") for d in chosen]
    elif action == "top_device":
        today = max(devices, key=lambda d: d.today_kwh)
        yesterday = max(devices, key=lambda d: d.yesterday_kwh)
        lines = [f"• Today: {today.name} ({_kwh(today.today_kwh)})",
                 f"• Yesterday: {yesterday.name} ({_kwh(yesterday.yesterday_kwh)})"]
    elif action == "spend":
        # "today" in the question asks for today's cost; anything else means this month so far.
        lines = _spend_lines(chosen, today="today" in words(text) or "todays" in words(text))
    elif action == "latest_alert":
        alerted = [d for d in chosen if d.latest_alert]
        if not alerted:
            return "Good news: none of your devices has gone over its limit."
        # ISO times sort chronologically as text.
        latest = max(alerted, key=lambda d: _alert_time(d.latest_alert))
        lines = [_alert_line(latest, zone)]
    else:
        raise ValueError(f"not a data action: {action}")
    return "\n".join([intro.strip() or "Here is what I found:", *lines])


def devices_context(devices: list[DeviceSummary], zone: ZoneInfo = UTC_ZONE) -> str:
    """Describe the client's devices in a few lines for the LLM's context."""
    if not devices:
        return "The client has no devices."
    lines = []
    for d in devices:
        limit = _kwh(d.limit_kwh) + "/h" if d.limit_kwh is not None else "none"
        alert = _alert_line(d, zone) if d.latest_alert else "no alert"
        spent = (f", cost today {d.today_cost} {d.currency}, this month {_kwh(d.month_kwh)} costing "
                 f"{d.month_cost} {d.currency}" if d.currency else "")
        lines.append(f"- {d.name}: today {_kwh(d.today_kwh)}, yesterday {_kwh(d.yesterday_kwh)}, "
                     f"limit {limit}{spent}, latest alert: {alert}")
    return "\n".join(lines)
