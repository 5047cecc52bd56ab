"""Run a monitor process: `python -m monitor worker --replica N`, `… events`, `… maintenance [--once]`
(or store the demo tariff: `… demo-tariff`)."""

from __future__ import annotations

import argparse
import signal

from common.amqp import run_with_reconnect
from common.logs import configure_logging
from common.metrics import serve_metrics
from common.settings import load_settings
from monitor.events import EventsConsumer
from monitor.maintenance import PartitionMaintainer, run_once
from monitor.storage import create_monitor_engine
from monitor.tariffs import seed_demo_tariff
from monitor.worker import IngestWorker


def parse_arguments() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m monitor")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="consume one replica's ingest queue")
    worker.add_argument("--replica", type=int, default=None,
                        help="replica number (default: EMS_REPLICA; in Swarm the task slot)")
    commands.add_parser("events", help="keep the device copy from the portal's events")
    maintenance = commands.add_parser("maintenance",
                                      help="create days of raw readings ahead, drop expired ones")
    maintenance.add_argument("--once", action="store_true", help="run once and leave (default: every hour)")
    commands.add_parser("demo-tariff", help="store the demo tariff if there is no tariff yet")
    return parser.parse_args()


def main() -> None:
    """Run the chosen consumer until SIGTERM/SIGINT, reconnecting by itself."""
    arguments = parse_arguments()
    settings = load_settings(service="monitor")
    engine = create_monitor_engine(settings)
    if arguments.command == "demo-tariff":
        with engine.begin() as connection:
            added = seed_demo_tariff(connection)
        print("demo tariff added" if added else "a tariff exists: demo tariff not added")
        return
    if arguments.command == "worker":
        replica = arguments.replica or settings.replica
        # Any number may join (the balancer learns of it from its heartbeats):
        # EMS_MONITOR_REPLICAS only says how many queues exist from the start.
        if replica < 1:
            raise SystemExit("replica must be 1 or more")
        configure_logging(f"monitor-{replica}", settings.log_level)
        consumer = IngestWorker(settings, engine, replica)
        name = f"monitor-{replica}"
    elif arguments.command == "maintenance":
        configure_logging("monitor-maintenance", settings.log_level)
        if arguments.once:
            run_once(engine, settings)
            return
        consumer = PartitionMaintainer(settings, engine)
        name = "monitor-maintenance"
    else:
        configure_logging("monitor-events", settings.log_level)
        consumer = EventsConsumer(settings, engine)
        name = "monitor-events"
    serve_metrics(settings, name)

    def shut_down(_signal, _frame):
        consumer.stop()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    run_with_reconnect(consumer.run, name, should_stop=lambda: consumer.stopping)


if __name__ == "__main__":
    main()
