"""Run the load balancer: `python -m balancer` (strategy from EMS_BALANCER_STRATEGY)."""

from __future__ import annotations

import signal

from balancer.service import Balancer, RoutingCounters
from balancer.strategies import create_strategy
from common.amqp import run_with_reconnect
from common.logs import configure_logging
from common.metrics import serve_metrics
from common.settings import load_settings


def main() -> None:
    """Route readings until SIGTERM/SIGINT."""
    settings = load_settings(service="balancer")
    configure_logging("balancer", settings.log_level)
    serve_metrics(settings, "balancer")
    try:
        strategy = create_strategy(settings.balancer_strategy, settings.monitor_replicas)
    except ValueError as error:
        raise SystemExit(f"EMS_BALANCER_STRATEGY: {error}") from error
    counters = RoutingCounters(settings.monitor_replicas)
    balancer = Balancer(settings, strategy, counters)

    def shut_down(_signal, _frame):
        balancer.stop()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    run_with_reconnect(balancer.run, "balancer", should_stop=lambda: balancer.stopping)


if __name__ == "__main__":
    main()
