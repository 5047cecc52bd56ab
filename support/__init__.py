"""The support service: live chat between clients and administrators, with a bot.

`create_app()` serves the chat widget, the admin inbox, the bot rules page and
the `/api/support` JSON API; `python -m support consumer` processes inbound chat
messages from the notifier.
"""

from __future__ import annotations

from flask import Flask

from common.auth import SessionVersions, configure_jwt
from common.db import engine_options
from common.metrics import instrument_flask
from common.pages import init_pages
from common.settings import Settings, load_settings
from support.extensions import db


def create_app(settings: Settings | None = None) -> Flask:
    """Build the support Flask application."""
    settings = settings or load_settings(service="support")
    app = Flask(__name__, static_folder=None)  # static files are served by web
    app.config.update(
        EMS_SETTINGS=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_url("support"),
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    from support import api, filters, pages, tools, users

    # Tokens of ended sessions are refused as soon as support.events tells (support.users).
    configure_jwt(app, settings, SessionVersions(users.known_sessions))
    init_pages(app)
    instrument_flask(app)
    db.init_app(app)

    filters.init_filters(app)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(tools.blueprint)
    return app


def settings_of(app: Flask) -> Settings:
    """Return the settings the app was built with."""
    return app.config["EMS_SETTINGS"]
