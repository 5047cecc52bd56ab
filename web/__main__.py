"""Portal commands: `python -m web relay | seed | demo-logins | create-admin`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from common.logs import configure_logging
from common.settings import load_settings

# The first administrator's password: from this variable, else asked on the terminal.
# Never a command-line argument, which other users could read in the process list.
ADMIN_PASSWORD_VARIABLE = "EMS_ADMIN_PASSWORD"  # noqa: S105 - a variable name, not a password


def create_admin(settings, email: str, name: str) -> int:
    """Create an administrator account (production's first login); return the exit status."""
    from web import create_app
    from web.accounts import create_user
    from web.validation import ValidationError

    password = os.environ.get(ADMIN_PASSWORD_VARIABLE) or getpass.getpass("Password: ")
    app = create_app(settings)
    with app.app_context():
        try:
            user = create_user({"email": email, "name": name, "role": "admin", "password": password},
                               app.extensions["ems_password_hasher"])
        except ValidationError as error:
            for field, message in error.errors.items():
                print(f"{field}: {message}", file=sys.stderr)
            return 2
    print(f"Administrator {user.email} created (id {user.id}).")
    return 0


def main() -> None:
    """Parse the command line and run the command."""
    parser = argparse.ArgumentParser(prog="python -m web")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("relay", help="publish outbox events to RabbitMQ until stopped")
    commands.add_parser("seed", help="create the demo administrator, clients and devices (idempotent)")
    commands.add_parser("demo-logins", help="print the demo logins")
    commands.add_parser("demo-users", help="print the demo users as JSON lines (id, name, role), "
                                           "what `python -m support seed-demo` reads")
    commands.add_parser("demo-devices", help="print the demo devices as ID=LIMIT, one a line "
                                             "(the simulator's --device format)")
    admin = commands.add_parser("create-admin", help=f"create an administrator (password from "
                                f"{ADMIN_PASSWORD_VARIABLE} or asked)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    arguments = parser.parse_args()
    settings = load_settings(service="web")

    if arguments.command == "create-admin":
        sys.exit(create_admin(settings, arguments.email, arguments.name))
    elif arguments.command == "demo-devices":
        from web.demo import DEMO_DEVICES

        print("\n".join(f"{device.id}={device.max_hourly_kwh}" for device in DEMO_DEVICES))
    elif arguments.command == "demo-logins":
        from web.demo import demo_logins_text

        print(demo_logins_text())
    elif arguments.command == "demo-users":
        from web import create_app
        from web.demo import demo_users_lines

        with create_app(settings).app_context():
            print(demo_users_lines())
    elif arguments.command == "seed":
        from web import create_app
        from web.demo import seed

        app = create_app(settings)
        with app.app_context():
            created = seed(app.extensions["ems_password_hasher"])
        print(f"Demo data ready ({created['users']} users and {created['devices']} devices created).")
    else:
        from common.metrics import serve_metrics
        from web.relay import run_relay

        configure_logging("web-relay", settings.log_level)
        serve_metrics(settings, "web-relay")
        run_relay(settings)


if __name__ == "__main__":
    main()
