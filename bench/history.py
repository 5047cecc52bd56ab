"""Benchmark a year of data: page server times, ingest beside the history, bytes per reading.

    .venv/bin/python bench/history.py [--scale 1.0] [--requests 200]

At scale 1: 1,000 devices of 100 clients (10 each), a year of hourly totals
(8.76 M rows), 90 days of raw readings at one per 10 minutes (12.96 M rows)
and an alert for every hour over the limit, bulk-loaded with LOAD DATA LOCAL
INFILE from generated CSV files. `--scale` multiplies the number of devices
and clients (a device keeps its full year), for a quick run on a small machine.

Then: server time (in-process Flask test client, no network) p50/p99 over
`--requests` requests of each page a client or an admin opens; storage
throughput (`store_readings`, batches of 1,000 fresh readings) with the
history in place and on an empty database of the same schema, in the same run;
bytes per raw reading and the size of each table (information_schema after
ANALYZE). Goals: page p99 < 50 ms, CSV of a month p99 < 200 ms, ingest with
history >= 0.9 of empty, <= 60 bytes per reading. Prints; asserts nothing.
Runs on a database prefix and RabbitMQ vhost of its own, removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pymysql  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.measure import percentile  # noqa: E402
from common.auth import Identity, mint_access_token  # noqa: E402
from common.messages import Reading  # noqa: E402
from common.settings import load_settings  # noqa: E402
from migrations.runner import upgrade  # noqa: E402
from monitor import create_app  # noqa: E402
from monitor.storage import create_monitor_engine, store_readings  # noqa: E402
from tests.isolation import isolated  # noqa: E402

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
READING_INTERVAL_MS = 600_000
RAW_DAYS = 90
DEVICES_PER_CLIENT = 10
LIMIT_KWH = 1.0
ZONE = "Europe/Berlin"
INGEST_BATCHES = 20
BATCH_SIZE = 1000
GOAL_PAGE_P99_MS, GOAL_CSV_P99_MS, GOAL_INGEST_RATIO, GOAL_BYTES = 50, 200, 0.9, 60
MONITOR_TABLES = ("readings", "hourly_consumption", "alerts", "devices")


def parse_arguments() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 1,000 devices (1.0)")
    parser.add_argument("--requests", type=int, default=200, help="requests per page (200)")
    return parser.parse_args()


def write_csv(path: Path, rows) -> int:
    """Write rows to a CSV file for LOAD DATA; return how many."""
    count = 0
    with path.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def load(settings, table: str, path: Path, columns: str) -> float:
    """Bulk-load a CSV file into a monitor table; return the seconds it took."""
    connection = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_user,
                                 password=settings.db_password, database=settings.database_name("monitor"),
                                 local_infile=True)
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} "
                           f"FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n' ({columns})")
        connection.commit()
    finally:
        connection.close()
    return time.perf_counter() - started


def load_history(settings, devices: list[str], now_ms: int, folder: Path) -> None:
    """Generate and bulk-load the devices, a year of hourly totals, 90 days of readings and the alerts."""
    random.seed(12)
    clients = len(devices) // DEVICES_PER_CLIENT
    write_csv(folder / "devices.csv", ((device, f"Meter {n:04d}", n // DEVICES_PER_CLIENT + 1,
                                        LIMIT_KWH, 1) for n, device in enumerate(devices)))
    load(settings, "devices", folder / "devices.csv", "id, name, owner_id, max_hourly_kwh, last_sequence")
    this_hour = now_ms // HOUR_MS * HOUR_MS

    def hours():
        for device in devices:
            for n in range(365 * 24, 0, -1):
                hour = datetime.fromtimestamp((this_hour - n * HOUR_MS) / 1000, UTC)
                # About 2 % of hours above the 1 kWh limit.
                yield device, hour.strftime("%Y-%m-%d %H:%M:%S"), f"{random.uniform(0.1, 1.02):.6f}"

    started = time.perf_counter()
    count = write_csv(folder / "hourly.csv", hours())
    seconds = load(settings, "hourly_consumption", folder / "hourly.csv", "device_id, hour_start, kwh")
    print(f"hourly totals: {count:,} rows generated and loaded in {time.perf_counter() - started:.0f} s "
          f"(LOAD DATA {seconds:.0f} s)")

    def readings():
        # In time order, as they arrive; each device on its own second within the 10 minutes.
        first = now_ms - RAW_DAYS * DAY_MS
        offsets = [(n * 7919) % READING_INTERVAL_MS for n in range(len(devices))]
        for slot in range(first // READING_INTERVAL_MS, now_ms // READING_INTERVAL_MS):
            start = slot * READING_INTERVAL_MS
            for device, offset in sorted(zip(devices, offsets, strict=True), key=lambda pair: pair[1]):
                yield start + offset, device, f"{random.uniform(0, 0.17):.6f}"

    started = time.perf_counter()
    count = write_csv(folder / "readings.csv", readings())
    seconds = load(settings, "readings", folder / "readings.csv", "timestamp_ms, device_id, kwh")
    print(f"raw readings: {count:,} rows generated and loaded in {time.perf_counter() - started:.0f} s "
          f"(LOAD DATA {seconds:.0f} s); {clients} clients, {len(devices)} devices")
    engine = create_monitor_engine(settings)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO alerts (device_id, hour_start, owner_id, device_name, kwh, limit_kwh, published_at) "
            "SELECT h.device_id, h.hour_start, d.owner_id, d.name, h.kwh, d.max_hourly_kwh, h.hour_start "
            "FROM hourly_consumption h JOIN devices d ON d.id = h.device_id WHERE h.kwh > d.max_hourly_kwh"))
    engine.dispose()


def table_sizes(settings) -> dict[str, tuple[int, int]]:
    """Return {table: (rows, data + index bytes)} after ANALYZE."""
    engine = create_monitor_engine(settings)
    with engine.connect() as connection:
        for table in MONITOR_TABLES:
            connection.execute(text(f"ANALYZE TABLE {table}")).all()
        sizes = {table: (connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar(),  # noqa: S608
                         int(connection.execute(text(
                             "SELECT SUM(data_length + index_length) FROM information_schema.tables "
                             "WHERE table_schema = DATABASE() AND table_name = :table"),
                             {"table": table}).scalar()))
                 for table in MONITOR_TABLES}
    engine.dispose()
    return sizes


def page_times(settings, devices: list[str], requests: int) -> list[tuple[str, float, float, float]]:
    """Return (page, p50 ms, p99 ms, goal ms) of each page, timed around the in-process request."""
    app = create_app(settings)
    client_token = mint_access_token(settings, Identity(1, "client", "Client 1"))
    admin_token = mint_access_token(settings, Identity(1_000_000, "admin", "Admin"))
    device = devices[0]  # client 1's first device
    today = datetime.now(UTC).date()
    month_ago = (today - timedelta(days=30)).isoformat()
    pages = [
        ("dashboard (10 devices)", "/monitor/fragments/dashboard", client_token, GOAL_PAGE_P99_MS),
        ("device day", f"/monitor/devices/{device}?view=day&tz={ZONE}", client_token, GOAL_PAGE_P99_MS),
        ("device week", f"/monitor/devices/{device}?view=week&tz={ZONE}", client_token, GOAL_PAGE_P99_MS),
        ("device month", f"/monitor/devices/{device}?view=month&tz={ZONE}", client_token, GOAL_PAGE_P99_MS),
        ("device year", f"/monitor/devices/{device}?view=year&tz={ZONE}", client_token, GOAL_PAGE_P99_MS),
        ("CSV of a month", f"/api/monitor/devices/{device}/export.csv?from={month_ago}&to={today}&tz={ZONE}",
         client_token, GOAL_CSV_P99_MS),
        ("alerts inbox", "/monitor/alerts", client_token, GOAL_PAGE_P99_MS),
        ("admin Pipeline page", "/monitor/pipeline", admin_token, GOAL_PAGE_P99_MS),
    ]
    results = []
    test_client = app.test_client()
    for name, path, token, goal in pages:
        headers = {"Authorization": f"Bearer {token}"}
        assert test_client.get(path, headers=headers).status_code == 200, path  # warm, and a real page
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = test_client.get(path, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, path
        results.append((name, percentile(times, 0.5), percentile(times, 0.99), goal))
    app.extensions["monitor_engine"].dispose()
    return results


def ingest_rate(settings, devices: list[str], start_ms: int) -> float:
    """Return readings/s that `store_readings` stores in batches of 1,000 fresh readings."""
    engine = create_monitor_engine(settings)
    # The next readings of every device, 10 minutes apart, in arrival order.
    stream = [Reading(start_ms + slot * READING_INTERVAL_MS + n, device, 0.05)
              for slot in range(1, INGEST_BATCHES * BATCH_SIZE // len(devices) + 2)
              for n, device in enumerate(devices)]
    batches = [stream[n * BATCH_SIZE:(n + 1) * BATCH_SIZE] for n in range(INGEST_BATCHES)]
    started = time.perf_counter()
    for batch in batches:
        store_readings(engine, batch, replica=1)
    seconds = time.perf_counter() - started
    engine.dispose()
    return sum(len(batch) for batch in batches) / seconds


def main() -> None:
    """Load the history, measure, print."""
    arguments = parse_arguments()
    device_count = max(DEVICES_PER_CLIENT,
                       round(1000 * arguments.scale) // DEVICES_PER_CLIENT * DEVICES_PER_CLIENT)
    variables = {"EMS_ENV": "test", "EMS_JWT_SECRET": secrets.token_hex(32)}
    with isolated(f"bench-history-{secrets.token_hex(3)}", variables) as variables:
        os.environ.update(variables)
        settings = load_settings()
        empty = dataclasses.replace(settings, db_prefix=settings.db_prefix + "empty_")
        upgrade(settings, ("monitor",))
        upgrade(empty, ("monitor",), broker=False)
        try:
            devices = [str(uuid.uuid4()) for _ in range(device_count)]
            now_ms = int(time.time() * 1000)
            with tempfile.TemporaryDirectory(prefix="ems-history-") as folder:
                load_history(settings, devices, now_ms, Path(folder))
            sizes = table_sizes(settings)
            print(f"\n{'table':<20}{'rows':>14}{'MB':>10}{'bytes/row':>11}")
            for table, (rows, size) in sizes.items():
                print(f"{table:<20}{rows:>14,}{size / 1e6:>10.1f}{size / max(rows, 1):>11.1f}")
            rows, size = sizes["readings"]
            print(f"bytes per raw reading (data + indexes): {size / rows:.1f} (goal <= {GOAL_BYTES})")

            print(f"\nserver time over {arguments.requests} requests (in-process, {ZONE}):")
            print(f"{'page':<24}{'p50 ms':>9}{'p99 ms':>9}{'goal p99':>10}")
            for name, p50, p99, goal in page_times(settings, devices, arguments.requests):
                missed = "" if p99 < goal else "  MISSED"
                print(f"{name:<24}{p50:>9.1f}{p99:>9.1f}{'< ' + str(goal):>10}{missed}")

            with_history = ingest_rate(settings, devices, now_ms)
            on_empty = ingest_rate(empty, devices, now_ms)
            print(f"\nstore_readings, {INGEST_BATCHES} batches of {BATCH_SIZE}: "
                  f"{with_history:,.0f} readings/s with the history, {on_empty:,.0f} on an empty database, "
                  f"ratio {with_history / on_empty:.2f} (goal >= {GOAL_INGEST_RATIO})")
        finally:
            from common.db import drop_databases
            drop_databases(empty, ("monitor",))


if __name__ == "__main__":
    main()
