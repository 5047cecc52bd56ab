"""Run a monitor worker: `python -m monitor worker --replica N` or `python -m monitor events`."""

from __future__ import annotations

import argparse
import signal

from common.amqp import run_with_reconnect
from common.logs import configure_logging
from common.settings import load_settings
from monitor.events import EventsConsumer
from monitor.storage import create_monitor_engine
from monitor.worker import IngestWorker


def parse_arguments() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m monitor")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="consume one replica's ingest queue")
    worker.add_argument("--replica", type=int, default=None,
                        help="replica number (default: EMS_REPLICA; in Swarm the task slot)")
    commands.add_parser("events", help="keep the device copy from the portal's events")
    return parser.parse_args()


def main() -> None:
    """Run the chosen consumer until SIGTERM/SIGINT, reconnecting by itself."""
    arguments = parse_arguments()
    settings = load_settings(service="monitor")
    engine = create_monitor_engine(settings)
    if arguments.command == "worker":
        replica = arguments.replica or settings.replica
        if not 1 <= replica <= settings.monitor_replicas:
            raise SystemExit(f"replica must be between 1 and EMS_MONITOR_REPLICAS "
                             f"({settings.monitor_replicas})")
        configure_logging(f"monitor-{replica}", settings.log_level)
        consumer = IngestWorker(settings, engine, replica)
        name = f"monitor-{replica}"
    else:
        configure_logging("monitor-events", settings.log_level)
        consumer = EventsConsumer(settings, engine)
        name = "monitor-events"

    def shut_down(_signal, _frame):
        consumer.stop()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    run_with_reconnect(consumer.run, name, should_stop=lambda: consumer.stopping)


if __name__ == "__main__":
    main()
