"""Monitoring: replicas that store readings and raise alerts, and the monitor API."""


def create_app(settings=None):
    """Create the monitor API (`monitor:create_app()` for gunicorn)."""
    from monitor.api import create_app as create_api

    return create_api(settings)
