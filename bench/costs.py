"""Benchmark what costs add to the pages: a year of one device's hourly totals, priced or not.

    .venv/bin/python bench/costs.py [--requests 30]

Loads a year of hourly totals for 10 devices of one client (87,600 rows), then times
(in-process Flask test client, no network) the device's day, month and year pages,
the dashboard and the CSV of a month, first with no tariff, then under a time-of-use
tariff (the demo's: two bands). The difference is what pricing each hour costs.
Prints p50/p99; asserts nothing. Runs on a database prefix of its own, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.measure import percentile  # noqa: E402
from common.auth import Identity, mint_access_token  # noqa: E402
from common.settings import load_settings  # noqa: E402
from migrations.runner import upgrade  # noqa: E402
from monitor import create_app  # noqa: E402
from monitor.tariffs import seed_demo_tariff  # noqa: E402
from tests.isolation import isolated  # noqa: E402

DEVICES = 10
ZONE = "Europe/Bucharest"
CLIENT = Identity(1, "client", "Client 1")


def load_year(app, devices: list[str]) -> None:
    """Store the devices and a year of hourly totals up to this hour."""
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    hours = [this_hour - timedelta(hours=n) for n in range(366 * 24)]
    with app.extensions["monitor_engine"].begin() as connection:
        for device in devices:
            connection.execute(text("INSERT INTO devices (id, name, owner_id, max_hourly_kwh, last_sequence) "
                                    "VALUES (:id, :name, :owner, 1.0, 1)"),
                               {"id": device, "name": f"Meter {device[:4]}", "owner": CLIENT.user_id})
            connection.execute(text("INSERT INTO hourly_consumption VALUES (:id, :hour, :kwh)"),
                               [{"id": device, "hour": hour, "kwh": f"0.{(n * 7919) % 1000:03d}"}
                                for n, hour in enumerate(hours)])


def page_times(app, device: str, requests: int) -> list[tuple[str, float, float]]:
    """Return (page, p50 ms, p99 ms) of each page."""
    month_ago = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()
    pages = [("dashboard (10 devices)", "/monitor/fragments/dashboard"),
             ("device day", f"/monitor/devices/{device}?view=day"),
             ("device month", f"/monitor/devices/{device}?view=month"),
             ("device year", f"/monitor/devices/{device}?view=year"),
             ("CSV of a month", f"/api/monitor/devices/{device}/export.csv?from={month_ago}")]
    headers = {"Authorization": f"Bearer {mint_access_token(app.config['EMS_SETTINGS'], CLIENT)}"}
    client, results = app.test_client(), []
    for name, path in pages:
        path += ("&" if "?" in path else "?") + f"tz={ZONE}"
        assert client.get(path, headers=headers).status_code == 200, path
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            assert client.get(path, headers=headers).status_code == 200, path
            times.append((time.perf_counter() - started) * 1000)
        results.append((name, percentile(times, 0.5), percentile(times, 0.99)))
    return results


def main() -> None:
    """Load, measure without and with a tariff, print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    arguments = parser.parse_args()
    variables = {"EMS_ENV": "test", "EMS_JWT_SECRET": secrets.token_hex(32)}
    with isolated(f"bench-costs-{secrets.token_hex(3)}", variables) as variables:
        os.environ.update(variables)
        settings = load_settings()
        upgrade(settings, ("monitor",), broker=False)
        app = create_app(settings)
        devices = [str(uuid.uuid4()) for _ in range(DEVICES)]
        load_year(app, devices)
        plain = page_times(app, devices[0], arguments.requests)
        with app.extensions["monitor_engine"].begin() as connection:
            seed_demo_tariff(connection)
        priced = page_times(app, devices[0], arguments.requests)
        print(f"\nserver time over {arguments.requests} requests (in-process, {ZONE}), "
              "without a tariff → under the demo's time-of-use tariff:")
        print(f"{'page':<24}{'p50 ms':>18}{'p99 ms':>18}")
        for (name, p50, p99), (_, cost_p50, cost_p99) in zip(plain, priced, strict=True):
            print(f"{name:<24}{p50:>8.1f} → {cost_p50:>6.1f}{p99:>9.1f} → {cost_p99:>6.1f}")
        app.extensions["monitor_engine"].dispose()


if __name__ == "__main__":
    main()
