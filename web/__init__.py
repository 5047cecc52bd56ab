"""The EMS portal: sign-in, administration of users and devices, the client pages,
a JSON API beside them, and the outbox that publishes every change."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from common.auth import SessionVersions, configure_jwt
from common.db import engine_options
from common.logs import configure_logging
from common.metrics import instrument_flask
from common.pages import init_pages
from common.security import trust_gateway
from common.settings import Settings, load_settings
from web.extensions import db
from web.passwords import password_hasher
from web.sessions import known_sessions, refresh_expiring_access_token

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Form bodies and JSON documents of the portal are small; refuse anything larger early.
MAX_REQUEST_BYTES = 256 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Create the portal application."""
    settings = settings or load_settings(service="web")
    configure_logging("web", settings.log_level)
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config.update(
        EMS_SETTINGS=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_url("web"),
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        JSON_SORT_KEYS=False,
    )
    # The gateway (Caddy or Traefik) sets X-Forwarded-For/Proto; EMS_TRUSTED_PROXY_HOPS says it is there.
    trust_gateway(app, settings)
    db.init_app(app)
    # The portal holds the token versions itself: it reads them fresh, no cache.
    configure_jwt(app, settings, SessionVersions(known_sessions, max_age_seconds=0))
    init_pages(app)
    instrument_flask(app)
    hasher = password_hasher(settings)
    app.extensions["ems_password_hasher"] = hasher
    app.extensions["ems_dummy_hash"] = hasher.hash("not-a-real-password")
    app.after_request(refresh_expiring_access_token)
    _register_blueprints(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from web.views import admin_devices, admin_users, api, auth, client, profile

    for module in (auth, admin_users, admin_devices, client, profile, api):
        app.register_blueprint(module.blueprint)
