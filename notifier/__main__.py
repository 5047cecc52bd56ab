"""Run the notifier: `python -m notifier`.

Every line that is specific to eventlet lives in this file, so that serving
the same app with gevent (which Flask-SocketIO supports with the same
handlers) means changing this file only.
"""

import warnings

# eventlet warns at import that it is deprecated; it is the design card's choice
# for now and this entry point is the only place that would change to leave it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import gc  # noqa: E402
import resource  # noqa: E402

from common.logs import configure_logging, log_event  # noqa: E402
from common.metrics import SOCKETS_OPEN, serve_metrics  # noqa: E402
from common.settings import load_settings  # noqa: E402
from notifier.app import create_app, start_background_work  # noqa: E402

ASYNC_MODE = "eventlet"
# eventlet's wsgi server accepts 1,024 connections by default; one notifier holds many more.
MAX_CONNECTIONS = 20_000
FULL_COLLECTION_EVERY = 100


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files towards `wanted`; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


def main() -> None:
    """Serve Socket.IO on the notifier port with eventlet."""
    import logging

    settings = load_settings(service="notifier")
    configure_logging("notifier", settings.log_level)
    # stomp.py and pika log every connection step and failure with tracebacks; the
    # notifier logs each failure once as its own event (stomp.connect_failed, …).
    logging.getLogger("stomp.py").setLevel(logging.WARNING)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    # Each socket is a file descriptor; leave room for the broker connections.
    open_files = raise_open_files_limit(MAX_CONNECTIONS + 256)
    app = create_app(settings, async_mode=ASYNC_MODE)
    connections = app.extensions["ems_connections"]
    SOCKETS_OPEN.set_function(lambda: len(connections))
    serve_metrics(settings, "notifier")
    start_background_work(app)
    # Keep the start-up objects (modules, app) out of every later full collection:
    # with thousands of sockets those collections are what pauses deliveries.
    gc.collect()
    gc.freeze()
    # A full collection over thousands of sockets pauses every delivery for ~60 ms;
    # Python starts one after every 10 middle-generation collections by default.
    # Every 100 leaves them ten times rarer (cyclic garbage waits longer, a few MB),
    # which took chat's p99 from ~100 ms to ~60 ms in bench/chat.py.
    gc.set_threshold(700, 10, FULL_COLLECTION_EVERY)
    log_event(logging.getLogger("notifier"), "notifier.start", port=settings.notifier_port,
              max_connections=MAX_CONNECTIONS, open_files=open_files)
    # Loopback locally; every interface in Swarm (EMS_BIND_HOST), where the gateway is another container.
    app.extensions["socketio"].run(app, host=settings.bind_host, port=settings.notifier_port,
                                   max_size=MAX_CONNECTIONS, log_output=False)


if __name__ == "__main__":
    main()
