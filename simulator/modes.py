"""The simulator's modes: replay, backfill, live, load."""

from __future__ import annotations

import logging
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from common.amqp import ConfirmingPublisher
from common.auth import Identity, mint_access_token
from common.logs import log_event
from common.messages import Reading
from common.settings import Settings
from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from simulator.household import INTERVAL_MS, epoch_ms, interval_kwh
from simulator.publisher import ConfirmedBurstPublisher, PublishSummary

logger = logging.getLogger(__name__)

DEMO_INTERVAL_SECONDS = 5.0
API_TIMEOUT_SECONDS = 5.0
# The administrator the seed creates first; the simulator reads the device list as it.
API_ADMIN_USER_ID = 1
MAX_API_PAGES = 100


class NoDevices(RuntimeError):
    """No device ids were given and none could be fetched."""


def fetch_devices(settings: Settings) -> list[dict]:
    """Return every device of the portal (`GET /api/devices`, all pages) as a short-lived admin."""
    token = mint_access_token(settings, Identity(API_ADMIN_USER_ID, "admin", "simulator"),
                              timedelta(minutes=2))
    devices, page, pages = [], 1, 1
    while page <= min(pages, MAX_API_PAGES):
        response = requests.get(f"{settings.web_url}/api/devices", params={"page": page},
                                timeout=API_TIMEOUT_SECONDS, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        payload = response.json()
        if isinstance(payload, list):  # an unpaginated answer
            return payload
        devices.extend(payload.get("items", []))
        pages = int(payload.get("pages", 1))
        page += 1
    return devices


def resolve_devices(arguments, settings: Settings) -> list[dict]:
    """Return the devices to simulate: the given ids, else the web API's list."""
    if arguments.device:
        return [{"id": device_id, "max_hourly_kwh": None} for device_id in arguments.device]
    try:
        devices = fetch_devices(settings)
    except (requests.RequestException, ValueError) as error:
        raise NoDevices(f"no --device given and the device list is unavailable: {error}") from error
    if not devices:
        raise NoDevices("no --device given and the portal has no devices")
    return devices


class ProgressBar:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int | None, width: int = 30):
        self.total = total
        self.width = width

    def __call__(self, summary: PublishSummary) -> None:
        """Redraw the bar for `summary`."""
        rate = f"{summary.rate:,.0f}/s"
        if self.total:
            share = min(summary.confirmed / self.total, 1.0)
            bar = "#" * int(share * self.width)
            line = f"\r[{bar:<{self.width}}] {summary.confirmed:,}/{self.total:,} {rate}"
        else:
            line = f"\r{summary.confirmed:,} confirmed {rate}"
        sys.stderr.write(line)
        if self.total and summary.confirmed >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def burst(settings: Settings, bodies: Iterator[bytes], total: int | None, rate: float | None = None,
          progress: bool = True) -> PublishSummary:
    """Publish `bodies` with confirms, showing progress."""
    publisher = ConfirmedBurstPublisher(settings, READINGS_EXCHANGE, READING_ROUTING_KEY, rate=rate,
                                        progress=ProgressBar(total) if progress else None)
    return publisher.publish_all(bodies)


def read_csv_values(path: str | Path) -> list[float]:
    """Return the kWh values of a CSV (one per line; a header or extra columns are tolerated)."""
    values = []
    for line in Path(path).read_text().splitlines():
        cell = line.split(",")[-1].strip()
        try:
            values.append(float(cell))
        except ValueError:
            continue  # a header line
    return values


def history_timestamps(count: int, end_ms: int) -> list[int]:
    """Return `count` 10-minute timestamps ending at the last 10-minute mark before `end_ms`."""
    last = end_ms // INTERVAL_MS * INTERVAL_MS
    return [last - (count - 1 - index) * INTERVAL_MS for index in range(count)]


def now_ms() -> int:
    """Return the current time in epoch milliseconds."""
    return int(time.time() * 1000)


def replay(arguments, settings: Settings) -> PublishSummary:
    """Send a CSV for each device: as history ending now, or paced one row per interval."""
    values = read_csv_values(arguments.csv)
    devices = resolve_devices(arguments, settings)
    if arguments.interval is None:
        stamps = history_timestamps(len(values), now_ms())
        bodies = (Reading(stamp, device["id"], value).to_json()
                  for device in devices for stamp, value in zip(stamps, values, strict=True))
        return burst(settings, bodies, len(values) * len(devices))
    return paced(settings, devices, arguments.interval, len(values),
                 lambda device, index, at: values[index])


def backfill(arguments, settings: Settings) -> PublishSummary:
    """Send `--days` of modelled household history for each device, ending now."""
    devices = resolve_devices(arguments, settings)
    steps = arguments.days * 24 * 6
    stamps = history_timestamps(steps, now_ms())

    def bodies():
        for device in devices:
            rng = random.Random(device["id"])
            scale = rng.uniform(0.6, 1.4)
            for stamp in stamps:
                at = datetime.fromtimestamp(stamp / 1000, tz=UTC)
                yield Reading(stamp, device["id"], interval_kwh(at, rng, scale)).to_json()

    return burst(settings, bodies(), steps * len(devices))


def demo_surge(at: datetime) -> bool:
    """Tell whether the demo's chosen device overspends now: the second half of every other hour."""
    return at.hour % 2 == 0 and at.minute >= 20


def live(arguments, settings: Settings) -> PublishSummary:
    """Send one reading per device stamped now every interval; the demo adds surges."""
    interval = DEMO_INTERVAL_SECONDS if arguments.demo else arguments.interval
    devices = resolve_devices(arguments, settings)
    limited = [d for d in devices if d.get("max_hourly_kwh")]
    surging = None
    if arguments.demo and limited:
        surging = min(limited, key=lambda d: float(d["max_hourly_kwh"]))["id"]
    generators = {device["id"]: random.Random(device["id"]) for device in devices}

    def value(device, index, at):
        if device["id"] == surging and demo_surge(at):
            # Twice the hourly limit as power: over the limit within the surge.
            return round(2 * float(device["max_hourly_kwh"]) * interval / 3600, 6)
        return interval_kwh(at.astimezone(), generators[device["id"]], seconds=interval)

    return paced(settings, devices, interval, arguments.count, value)


def paced(settings: Settings, devices: list[dict], interval: float, rounds: int | None,
          value) -> PublishSummary:
    """Every `interval` seconds send one reading per device stamped now, with a blocking confirm."""
    publisher = ConfirmingPublisher(settings)
    summary = PublishSummary()
    started = time.monotonic()
    index = 0
    try:
        while rounds is None or index < rounds:
            at = datetime.now(UTC)
            for device in devices:
                reading = Reading(epoch_ms(at), device["id"], value(device, index, at))
                publisher.publish(READINGS_EXCHANGE, READING_ROUTING_KEY, reading.to_json())
                summary.sent += 1
                summary.confirmed += 1
            index += 1
            log_event(logger, "simulator.round", round=index, devices=len(devices))
            next_round = started + index * interval
            while time.monotonic() < next_round:
                publisher.process_events()
                time.sleep(min(1.0, max(next_round - time.monotonic(), 0)))
    finally:
        publisher.close()
        summary.seconds = time.monotonic() - started
    return summary


def load_bodies(device_ids: list[str], count: int, end_ms: int) -> Iterator[bytes]:
    """Yield `count` distinct readings spread round the devices, 10 minutes apart per device."""
    rng = random.Random(count)
    for index in range(count):
        device_id = device_ids[index % len(device_ids)]
        stamp = end_ms - (index // len(device_ids)) * INTERVAL_MS
        yield Reading(stamp, device_id, round(rng.uniform(0.01, 0.5), 3)).to_json()


def load(arguments, settings: Settings) -> PublishSummary:
    """Send `--count` readings for `--devices` devices at `--rate` per second."""
    device_ids = arguments.device or [str(uuid.uuid4()) for _ in range(arguments.devices)]
    end = now_ms() // INTERVAL_MS * INTERVAL_MS
    return burst(settings, load_bodies(device_ids, arguments.count, end), arguments.count,
                 rate=arguments.rate or None)


MODES = {"replay": replay, "backfill": backfill, "live": live, "load": load}


def run(arguments, settings: Settings) -> PublishSummary:
    """Run the mode named on the command line."""
    return MODES[arguments.mode](arguments, settings)
