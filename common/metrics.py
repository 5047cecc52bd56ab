"""Prometheus metrics of every EMS process, and the port that serves them with health.

Each process serves `/metrics`, `/healthz` and `/readyz` on a metrics port of its
own: EMS_METRICS_PORT when set, else EMS_METRICS_BASE_PORT plus the process's
offset below (9200 + …, loopback locally, every interface in Swarm). The gunicorn
apps run in prometheus_client's multiprocess mode (common/gunicorn_conf.py): each
worker writes its samples to files, the gunicorn master serves their sum.

Names follow Prometheus' conventions (`ems_` prefix, base units in the name,
`_total` for counters). Labels are bounded: a replica number, a queue, the class
of a dead-letter reason (the part before ':'), an HTTP route template and status
— never a user, a device or a message.

The metrics are module-level objects in prometheus_client's one registry, as the
library intends: the hot paths that count live in many modules.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from common import health as worker_health
from common.logs import log_event

logger = logging.getLogger(__name__)

# Offsets of each process's metrics port from EMS_METRICS_BASE_PORT (the Procfile's names;
# monitor replica N at 10 + N). swarm/prometheus/prometheus.yml lists the same ports.
PORT_OFFSETS = {
    "web": 0,
    "web-relay": 1,
    "support": 2,
    "support-consumer": 3,
    "notifier": 4,
    "balancer": 5,
    "monitor-events": 6,
    "monitor-maintenance": 7,
    "monitor-api": 8,
}
MONITOR_REPLICA_OFFSET = 10
MAX_MONITOR_REPLICAS_WITH_PORTS = 89

# Dead-letter reasons are written by our code as `class: detail`; anything else is "other",
# so that a label value never carries message content.
REASON_CLASS = re.compile(r"[a-z][a-z0-9-]{0,39}")

READINGS_RECEIVED = Counter("ems_readings_received_total",
                            "Readings the balancer took from readings.incoming.")
READINGS_ROUTED = Counter("ems_readings_routed_total",
                          "Readings the balancer routed to a replica, confirmed by the broker.", ["replica"])
READINGS_STORED = Counter("ems_readings_stored_total",
                          "Readings a monitor replica stored for the first time.", ["replica"])
READINGS_DUPLICATE = Counter("ems_readings_duplicate_total",
                             "Readings a monitor replica found stored before (counted once).", ["replica"])
DEAD_LETTERS = Counter("ems_dead_letters_total", "Messages dead-lettered, by source queue and reason class.",
                       ["queue", "reason"])
BATCH_READINGS = Histogram("ems_monitor_batch_readings", "Deliveries per batch a monitor replica stored.",
                           buckets=(1, 10, 50, 100, 250, 500, 1000, 2000))
READING_COMMIT_SECONDS = Histogram(
    "ems_reading_commit_latency_seconds",
    "From a reading's timestamp to the commit of its hourly total (a backfill lands in the top bucket).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
ALERTS_RAISED = Counter("ems_alerts_raised_total", "Over-consumption alerts a monitor replica raised.")
ALERT_DELIVERY_SECONDS = Histogram(
    "ems_alert_delivery_latency_seconds", "From an alert's commit to its emit to the owner's sockets.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ALERTS_DELIVERED = Counter("ems_alerts_delivered_total", "Alerts the notifier emitted to their owner's room.")
BROKER_RECONNECTS = Counter("ems_broker_reconnects_total", "Times a worker lost its broker or database and "
                            "connected again.")
SOCKETS_OPEN = Gauge("ems_notifier_sockets_open", "Socket.IO connections open on this notifier.")
CHAT_EVENTS = Counter("ems_notifier_chat_events_total", "Chat events browsers sent to this notifier.",
                      ["event"])
CHAT_MESSAGES_HANDLED = Counter("ems_support_chat_messages_total", "Inbound chat events support handled.")
OUTBOX_EVENTS = Gauge("ems_outbox_events", "Portal events in the outbox, not yet published.")
OUTBOX_OLDEST_SECONDS = Gauge("ems_outbox_oldest_event_age_seconds",
                              "Age of the oldest unpublished portal event (0 when the outbox is empty).")
HTTP_REQUESTS = Counter("ems_http_requests_total", "HTTP requests served, by route template and status.",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("ems_http_request_duration_seconds",
                         "Time to serve an HTTP request, by route template.", ["route", "method"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class HealthCollector:
    """Export the worker's health verdicts as gauges, read at each scrape."""

    def collect(self):
        """Yield ems_worker_healthy and ems_worker_ready (1 or 0)."""
        healthy = GaugeMetricFamily("ems_worker_healthy",
                                    "1 while the worker's loop turns and its consumer is not stuck.")
        healthy.add_metric([], float(worker_health.HEALTH.liveness()[0]))
        ready = GaugeMetricFamily("ems_worker_ready",
                                  "1 while the worker is connected to broker and database and consuming.")
        ready.add_metric([], float(worker_health.HEALTH.readiness()[0]))
        return [healthy, ready]


def reason_class(reason: str) -> str:
    """Return the bounded label of a dead-letter reason: its class before ':', else "other"."""
    prefix = reason.split(":", 1)[0].strip()
    return prefix if REASON_CLASS.fullmatch(prefix) else "other"


def count_dead_letter(queue: str, reason: str) -> None:
    """Count one message dead-lettered from `queue`."""
    DEAD_LETTERS.labels(queue=queue, reason=reason_class(reason)).inc()


def metrics_port(settings, process: str) -> int:
    """Return the metrics port of `process` ("balancer", "monitor-2", …); 0 when metrics are off."""
    if settings.metrics_port:
        return settings.metrics_port
    if not settings.metrics_base_port:
        return 0
    if process.startswith("monitor-") and process[len("monitor-"):].isdigit():
        replica = int(process[len("monitor-"):])
        if replica > MAX_MONITOR_REPLICAS_WITH_PORTS:
            return 0
        return settings.metrics_base_port + MONITOR_REPLICA_OFFSET + replica
    return settings.metrics_base_port + PORT_OFFSETS[process]


class _MetricsHandler(BaseHTTPRequestHandler):
    """Serve /metrics, /healthz and /readyz of this process."""

    registry: CollectorRegistry = REGISTRY
    with_health = True

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz") and self.with_health:
            check = worker_health.HEALTH.liveness if path == "/healthz" else worker_health.HEALTH.readiness
            ok, reason = check()
            self._answer(200 if ok else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._answer(404, b"not found\n", "text/plain; charset=utf-8")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_arguments) -> None:
        # A scrape every few seconds is not worth a log line.
        pass


def serve_metrics(settings, process: str, registry: CollectorRegistry | None = None,
                  with_health: bool = True) -> ThreadingHTTPServer | None:
    """Serve this process's metrics (and health) on its metrics port, on a daemon thread.

    A port already taken (a second run on the same machine) costs the metrics, not
    the process: it is logged and the process goes on without them.
    """
    worker_health.configure(settings.stuck_seconds)
    port = metrics_port(settings, process)
    if not port:
        return None
    registry = registry or REGISTRY
    if with_health:
        registry.register(HealthCollector())
    handler = type("MetricsHandler", (_MetricsHandler,),
                   {"registry": registry, "with_health": with_health})
    try:
        server = ThreadingHTTPServer((settings.bind_host, port), handler)
    except OSError as error:
        log_event(logger, "metrics.port_unavailable", level=logging.WARNING, worker=process, port=port,
                  error=str(error))
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log_event(logger, "metrics.serving", worker=process, port=port)
    return server


def instrument_flask(app) -> None:
    """Count the app's requests and time them, by route template, method and status."""
    from flask import g, request

    @app.before_request
    def _start_timer():
        g.ems_request_started = time.perf_counter()

    @app.after_request
    def _count_request(response):
        started = g.pop("ems_request_started", None)
        # The rule's template (/api/devices/<uuid:device_id>), never the path itself.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        HTTP_REQUESTS.labels(route=route, method=request.method, status=str(response.status_code)).inc()
        if started is not None:
            HTTP_SECONDS.labels(route=route, method=request.method).observe(time.perf_counter() - started)
        return response


def count_stored_batch(replica: int, deliveries: int, timestamps_ms: list[int], result) -> None:
    """Count a monitor replica's committed batch: its size, what it stored, its latency, its alerts."""
    label = str(replica)
    BATCH_READINGS.observe(deliveries)
    READINGS_STORED.labels(replica=label).inc(result.inserted)
    READINGS_DUPLICATE.labels(replica=label).inc(result.duplicates)
    if result.alerts:
        ALERTS_RAISED.inc(result.alerts)
    now = time.time()
    for timestamp_ms in timestamps_ms:
        READING_COMMIT_SECONDS.observe(max(0.0, now - timestamp_ms / 1000))


# Header of an alert message: when the monitor published it (epoch ms), right after the commit
# that raised it; the notifier measures delivery from it. STOMP hands it over as a frame header.
ALERT_PUBLISHED_HEADER = "ems-published-ms"


def alert_published_headers() -> dict:
    """Return the headers that stamp an alert message with its publishing time."""
    return {ALERT_PUBLISHED_HEADER: int(time.time() * 1000)}


def count_alert_delivered(headers: dict) -> None:
    """Count an alert emitted to its owner's room, with its latency when the message is stamped."""
    ALERTS_DELIVERED.inc()
    stamp = str(headers.get(ALERT_PUBLISHED_HEADER, ""))
    if stamp.isdigit():
        ALERT_DELIVERY_SECONDS.observe(max(0.0, time.time() - int(stamp) / 1000))
