"""Settings an administrator changes at run time; the environment gives the defaults."""

from __future__ import annotations

from flask import current_app

from web.extensions import db
from web.models import PortalSetting

SIGNUP_ENABLED = "signup_enabled"


def signup_enabled() -> bool:
    """Tell whether visitors may create client accounts."""
    stored = db.session.get(PortalSetting, SIGNUP_ENABLED)
    if stored is None:
        return current_app.config["EMS_SETTINGS"].signup_enabled
    return stored.value == "true"


def set_signup_enabled(enabled: bool) -> None:
    """Open or close sign-up for everybody."""
    stored = db.session.get(PortalSetting, SIGNUP_ENABLED)
    if stored is None:
        db.session.add(PortalSetting(name=SIGNUP_ENABLED, value="true" if enabled else "false"))
    else:
        stored.value = "true" if enabled else "false"
    db.session.commit()
