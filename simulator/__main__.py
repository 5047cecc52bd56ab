"""Send meter readings: `python -m simulator replay|backfill|live|load …` (see --help)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from common.logs import configure_logging
from common.settings import load_settings
from simulator import modes
from simulator.generate_sample import SAMPLE_PATH


def parse_arguments(argv=None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    commands = parser.add_subparsers(dest="mode", required=True)

    def with_devices(command):
        command.add_argument("--device", action="append", default=[], metavar="UUID[=LIMIT]",
                             help="device id, optionally with its hourly limit in kWh to scale the "
                                  "household model (repeatable; default: every device from the web API)")
        return command

    replay = with_devices(commands.add_parser("replay", help="send a CSV of one kWh value per 10 minutes"))
    replay.add_argument("--csv", default=str(SAMPLE_PATH), help="CSV file (default: the sample)")
    replay.add_argument("--interval", type=float, default=None,
                        help="send one row every S seconds stamped now (default: all at once, "
                             "as the history that ends now)")

    backfill = with_devices(commands.add_parser("backfill", help="send N days of history ending now"))
    backfill.add_argument("--days", type=int, required=True)

    live = with_devices(commands.add_parser("live", help="send a reading stamped now every interval"))
    live.add_argument("--interval", type=float, default=600.0, help="seconds between readings (600)")
    live.add_argument("--demo", action="store_true",
                      help="demo: 5 s interval; the device with the lowest limit goes over it now and then")
    live.add_argument("--count", type=int, default=None, help="stop after this many rounds")

    load = with_devices(commands.add_parser("load", help="generate load for benchmarks"))
    load.add_argument("--devices", type=int, default=50)
    load.add_argument("--rate", type=float, default=0, help="readings per second (0: as fast as possible)")
    load.add_argument("--count", type=int, default=10_000)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Run the chosen mode and print its summary."""
    arguments = parse_arguments(argv)
    settings = load_settings(service="simulator")
    configure_logging("simulator", settings.log_level)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        summary = modes.run(arguments, settings)
    except modes.NoDevices as error:
        logging.getLogger(__name__).error(str(error))
        raise SystemExit(2) from error
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    print(summary.line())


if __name__ == "__main__":
    main()
