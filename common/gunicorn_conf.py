"""gunicorn settings shared by the EMS HTTP services (`gunicorn -c python:common.gunicorn_conf`).

Prometheus' multiprocess mode: every worker writes its samples to files in
PROMETHEUS_MULTIPROC_DIR, which must be set before prometheus_client is first
imported, so here, in the master, before it forks. The master serves their sum
on the service's metrics port (common/metrics.py); a worker that exits has its
live gauges removed.
"""

import os
import shutil
import tempfile

OWN_DIRECTORY = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # A directory of this master's own: samples of an earlier run never add to this one's.
    OWN_DIRECTORY = tempfile.mkdtemp(prefix="ems-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = OWN_DIRECTORY

# The metrics port of each app, by the module gunicorn loads it from.
PROCESS_OF_APP = {"web": "web", "support": "support", "monitor": "monitor-api"}


def when_ready(server):
    """Serve the workers' summed metrics from the master, once it listens."""
    from prometheus_client import CollectorRegistry, multiprocess

    from common.metrics import serve_metrics
    from common.settings import load_settings

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    module = server.app.app_uri.split(":", 1)[0]
    serve_metrics(load_settings(), PROCESS_OF_APP.get(module, module), registry=registry, with_health=False)


def child_exit(server, worker):
    """Drop the live gauges of a worker that exited."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the samples directory this master made."""
    if OWN_DIRECTORY:
        shutil.rmtree(OWN_DIRECTORY, ignore_errors=True)
