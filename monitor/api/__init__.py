"""The monitor API (port 5003): consumption JSON under /api/monitor, pages and
htmx fragments under /monitor, all extending the shared layout."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common.auth import SessionVersions, configure_jwt
from common.logs import configure_logging
from common.metrics import instrument_flask
from common.pages import init_pages
from common.settings import Settings, load_settings
from monitor.costs import money_text
from monitor.storage import create_monitor_engine

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def create_app(settings: Settings | None = None) -> Flask:
    """Create the monitor API application."""
    settings = settings or load_settings(service="monitor")
    configure_logging("monitor-api", settings.log_level)
    app = Flask(__name__, template_folder=str(TEMPLATES_DIR), static_folder=None)
    app.config.update(EMS_SETTINGS=settings, MAX_CONTENT_LENGTH=64 * 1024, JSON_SORT_KEYS=False)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    app.extensions["monitor_engine"] = create_monitor_engine(settings)
    from monitor.api import access, json_routes, pages, tariff_pages

    # Tokens of ended sessions are refused as soon as monitor.events tells (monitor.events).
    configure_jwt(app, settings, SessionVersions(access.known_sessions))
    init_pages(app)
    instrument_flask(app)

    app.register_blueprint(json_routes.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(tariff_pages.blueprint)
    app.jinja_env.filters["kwh"] = format_kwh
    app.jinja_env.filters["money"] = money_text
    app.jinja_env.globals["utc"] = UTC
    return app


def format_kwh(value, places: int = 2) -> str:
    """Render a kWh amount for people: `1.25 kWh`."""
    return f"{float(value or 0):.{places}f} kWh"
