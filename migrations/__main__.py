"""Run the migrations: `python -m migrations upgrade [web|support|monitor ...]`."""

import argparse
import logging
import sys

from common.db import SERVICES_WITH_DATABASE, MissingDataError
from common.logs import configure_logging
from common.settings import load_settings
from migrations.runner import upgrade


def main() -> None:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="python -m migrations")
    parser.add_argument("command", choices=["upgrade"])
    parser.add_argument("services", nargs="*", help="web, support or monitor (default: all)")
    arguments = parser.parse_args()
    unknown = set(arguments.services) - set(SERVICES_WITH_DATABASE)
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    settings = load_settings()
    configure_logging("migrations", settings.log_level)
    # Alembic narrates every step at INFO; our own line per database says enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        upgrade(settings, tuple(arguments.services) or SERVICES_WITH_DATABASE)
    except MissingDataError as error:
        # The reason is the whole message: no traceback to read past.
        print(f"migrations refused: {error}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
