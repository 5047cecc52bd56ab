"""Publish the balancer's routing counters for the admin pipeline page.

The balancer has no database of its own; it is part of the monitoring
pipeline and writes its cumulative counters into the monitor database's
`balancer_stats` table (one row per balancer instance and replica, row 0 for
dead letters), which the monitor API sums. Losing the database only pauses
the statistics, never the routing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pymysql

from common.logs import log_event
from common.settings import Settings

logger = logging.getLogger(__name__)

STATS_INTERVAL_SECONDS = 2.0
# Even idle, the balancer reports this often, so the pipeline page sees it alive.
STATS_HEARTBEAT_SECONDS = 30.0

UPSERT_STATS = (
    "INSERT INTO balancer_stats (instance, replica, strategy, routed, dead_lettered, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP(3)) "
    "ON DUPLICATE KEY UPDATE strategy = VALUES(strategy), routed = VALUES(routed), "
    "dead_lettered = VALUES(dead_lettered), updated_at = VALUES(updated_at)"
)


def instance_name() -> str:
    """Return a name for this balancer process, unique among running instances."""
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


def stats_rows(instance: str, strategy: str, counts: dict[int, int]) -> list[tuple]:
    """Return the balancer_stats rows for a counter snapshot (replica 0 = dead letters)."""
    return [
        (instance, replica, strategy, 0 if replica == 0 else count, count if replica == 0 else 0)
        for replica, count in sorted(counts.items())
    ]


class StatsWriter(threading.Thread):
    """Every few seconds, write the counters to `balancer_stats` (own DB connection)."""

    def __init__(self, settings: Settings, strategy: str, counters):
        super().__init__(name="balancer-stats", daemon=True)
        self.settings = settings
        self.strategy = strategy
        self.counters = counters
        self.instance = instance_name()
        self._stop_event = threading.Event()
        self._connection = None
        self._written: dict[int, int] | None = None
        self._written_at = 0.0

    def run(self) -> None:
        """Write until stopped, then once more."""
        while not self._stop_event.wait(STATS_INTERVAL_SECONDS):
            self.write()
        self.write()

    def stop(self) -> None:
        """Ask the thread to write a last time and end."""
        self._stop_event.set()

    def write(self) -> None:
        """Upsert the current counters; log and carry on if the database is away."""
        snapshot = self.counters.snapshot()
        if snapshot == self._written and time.monotonic() - self._written_at < STATS_HEARTBEAT_SECONDS:
            return  # idle: nothing new to say yet

        rows = stats_rows(self.instance, self.strategy, snapshot)
        try:
            if self._connection is None:
                self._connection = pymysql.connect(
                    host=self.settings.db_host, port=self.settings.db_port,
                    user=self.settings.db_user, password=self.settings.db_password,
                    database=self.settings.database_name("monitor"), autocommit=True,
                    connect_timeout=5)
            with self._connection.cursor() as cursor:
                cursor.executemany(UPSERT_STATS, rows)
            self._written, self._written_at = snapshot, time.monotonic()
        except pymysql.MySQLError as error:
            log_event(logger, "balancer.stats_failed", level=logging.WARNING, error=str(error)[:200])
            self._connection = None
