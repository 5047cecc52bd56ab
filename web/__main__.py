"""Portal commands: `python -m web relay | seed | demo-logins`."""

from __future__ import annotations

import argparse

from common.logs import configure_logging
from common.settings import load_settings


def main() -> None:
    """Parse the command line and run the command."""
    parser = argparse.ArgumentParser(prog="python -m web")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("relay", help="publish outbox events to RabbitMQ until stopped")
    commands.add_parser("seed", help="create the demo administrator, clients and devices (idempotent)")
    commands.add_parser("demo-logins", help="print the demo logins")
    arguments = parser.parse_args()
    settings = load_settings()

    if arguments.command == "demo-logins":
        from web.demo import demo_logins_text

        print(demo_logins_text())
    elif arguments.command == "seed":
        from web import create_app
        from web.demo import demo_logins_text, seed

        app = create_app(settings)
        with app.app_context():
            created = seed(app.extensions["ems_password_hasher"])
        print(f"Demo data ready ({created['users']} users and {created['devices']} devices created).")
        print(demo_logins_text())
    else:
        from web.relay import run_relay

        configure_logging("web-relay", settings.log_level)
        run_relay(settings)


if __name__ == "__main__":
    main()
