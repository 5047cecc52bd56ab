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

from common.amqp import CONNECTION_ERRORS, ConfirmingPublisher, PublishNotConfirmed
from common.auth import SERVICE_USER_ID, Identity, mint_access_token
from common.backoff import Backoff
from common.logs import log_event
from common.messages import Reading
from common.settings import Settings
from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE
from simulator.household import INTERVAL_MS, epoch_ms, interval_kwh
from simulator.publisher import ConfirmedBurstPublisher, PublishSummary

logger = logging.getLogger(__name__)

DEMO_INTERVAL_SECONDS = 5.0
API_TIMEOUT_SECONDS = 5.0
MAX_API_PAGES = 100
DEVICE_RETRY_SECONDS = 5.0
DEVICE_REFRESH_SECONDS = 60.0
# An unscaled household peaks at about 2.3 kWh in an hour; limit/4 keeps that near half the limit.
LIMIT_TO_SCALE = 4.0
# Live readings are seconds apart: rounded to what the monitor stores (a milliwatt-hour).
LIVE_KWH_PLACES = 6
# Readings a paced run keeps while the broker refuses them; then it waits instead of making more.
MAX_PACED_BACKLOG = 10_000


class NoDevices(RuntimeError):
    """No device ids were given and none could be fetched."""


def fetch_devices(settings: Settings) -> list[dict]:
    """Return every device of the portal (`GET /api/devices`, all pages) as a short-lived admin."""
    token = mint_access_token(settings, Identity(SERVICE_USER_ID, "admin", "simulator"),
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


def parse_device_argument(argument: str) -> dict:
    """Parse `UUID` or `UUID=LIMIT` (the device's hourly limit in kWh) from the command line."""
    device_id, _, limit = argument.partition("=")
    return {"id": device_id, "max_hourly_kwh": float(limit) if limit else None}


def resolve_devices(arguments, settings: Settings) -> list[dict]:
    """Return the devices to simulate: the given ids, else the web API's list."""
    if arguments.device:
        return [parse_device_argument(argument) for argument in arguments.device]
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
    rows = iter(values)
    rounds = len(values)
    current = {"value": 0.0}

    def next_row(device, at):
        # One CSV row per round, the same for every device of the round.
        if device is devices[0]:
            current["value"] = next(rows)
        return current["value"]

    return paced(settings, lambda: devices, arguments.interval, rounds, next_row)


def backfill(arguments, settings: Settings) -> PublishSummary:
    """Send `--days` of modelled household history for each device, ending now."""
    devices = resolve_devices(arguments, settings)
    steps = arguments.days * 24 * 6
    stamps = history_timestamps(steps, now_ms())

    def bodies():
        for device in devices:
            rng = random.Random(device["id"])
            scale = device_scale(device) * rng.uniform(0.8, 1.2)
            for stamp in stamps:
                at = datetime.fromtimestamp(stamp / 1000, tz=UTC)
                yield Reading(stamp, device["id"], interval_kwh(at, rng, scale)).to_json()

    return burst(settings, bodies(), steps * len(devices))


def device_scale(device: dict) -> float:
    """Return how much to scale the household model for a device.

    With a known limit the evening peak stays near half of it, so that only the
    demo's surges, not every evening, go over it; otherwise an ordinary household.
    """
    limit = device.get("max_hourly_kwh")
    return float(limit) / LIMIT_TO_SCALE if limit else 1.0


def demo_surge(at: datetime) -> bool:
    """Tell whether the demo's chosen device overspends now: the second half of every other hour."""
    return at.hour % 2 == 0 and at.minute >= 20


def wait_for_devices(arguments, settings: Settings) -> list[dict]:
    """Return the devices to simulate, waiting for the portal while it is not up yet."""
    while True:
        try:
            return resolve_devices(arguments, settings)
        except NoDevices as error:
            # `make run` starts the portal and the simulator together: wait, never give up.
            log_event(logger, "simulator.waiting_for_devices", level=logging.WARNING, reason=str(error)[:200])
            time.sleep(DEVICE_RETRY_SECONDS)


class LiveDevices:
    """The devices of a live run, refreshed from the portal now and then (admins add devices)."""

    def __init__(self, arguments, settings: Settings):
        self.arguments = arguments
        self.settings = settings
        self.devices = wait_for_devices(arguments, settings)
        self._fetched = time.monotonic()

    def current(self) -> list[dict]:
        """Return the devices, refetched when the list is older than DEVICE_REFRESH_SECONDS."""
        if not self.arguments.device and time.monotonic() - self._fetched > DEVICE_REFRESH_SECONDS:
            self._fetched = time.monotonic()
            try:
                self.devices = resolve_devices(self.arguments, self.settings)
            except NoDevices as error:
                log_event(logger, "simulator.device_refresh_failed", level=logging.WARNING,
                          reason=str(error)[:200])
        return self.devices


def demo_surging_device(devices: list[dict]) -> str | None:
    """Return the id of the device with the lowest limit: the one the demo pushes over it."""
    limited = [d for d in devices if d.get("max_hourly_kwh")]
    return min(limited, key=lambda d: float(d["max_hourly_kwh"]))["id"] if limited else None


def live(arguments, settings: Settings) -> PublishSummary:
    """Send one reading per device stamped now every interval; the demo adds surges."""
    interval = DEMO_INTERVAL_SECONDS if arguments.demo else arguments.interval
    devices = LiveDevices(arguments, settings)
    generators: dict[str, random.Random] = {}

    def value(device, at):
        if arguments.demo and device["id"] == demo_surging_device(devices.devices) and demo_surge(at):
            # Twice the hourly limit as power: over the limit within the surge.
            return round(2 * float(device["max_hourly_kwh"]) * interval / 3600, 6)
        generator = generators.setdefault(device["id"], random.Random(device["id"]))
        return interval_kwh(at.astimezone(), generator, device_scale(device), seconds=interval,
                            places=LIVE_KWH_PLACES)

    return paced(settings, devices.current, interval, arguments.count, value)


def paced(settings: Settings, devices, interval: float, rounds: int | None, value) -> PublishSummary:
    """Every `interval` seconds send one reading per device stamped now, each confirmed.

    A reading that could not be sent (broker restarting, or refusing readings
    because it is overloaded) is kept and sent first in the next round, so a
    live run rides out an outage. The backlog is bounded: when it is full, the
    run waits, retrying with a capped back-off, before it makes new readings.
    """
    publisher = ConfirmingPublisher(settings)
    summary = PublishSummary()
    backlog: list[Reading] = []
    started = time.monotonic()
    index = 0
    try:
        while rounds is None or index < rounds:
            at = datetime.now(UTC)
            fresh = [Reading(epoch_ms(at), device["id"], value(device, at)) for device in devices()]
            backlog += fresh
            summary.sent += len(fresh)
            send_backlog(publisher, backlog, summary)
            backoff = Backoff()
            while len(backlog) >= MAX_PACED_BACKLOG:
                delay = backoff.next_delay()
                log_event(logger, "simulator.backlog_full", level=logging.WARNING, waiting=len(backlog),
                          retry_in=round(delay, 2))
                time.sleep(delay)
                send_backlog(publisher, backlog, summary)
            index += 1
            if rounds is not None and index >= rounds:
                break
            next_round = started + index * interval
            while time.monotonic() < next_round:
                try:
                    publisher.process_events()
                except CONNECTION_ERRORS:
                    publisher.close()
                time.sleep(min(1.0, max(next_round - time.monotonic(), 0)))
    finally:
        publisher.close()
        summary.seconds = time.monotonic() - started
    return summary


def send_backlog(publisher: ConfirmingPublisher, backlog: list[Reading], summary: PublishSummary) -> None:
    """Publish the backlog's readings in order until one is refused or the broker is gone."""
    while backlog:
        try:
            publisher.publish(READINGS_EXCHANGE, READING_ROUTING_KEY, backlog[0].to_json())
        except (PublishNotConfirmed, *CONNECTION_ERRORS) as error:
            if isinstance(error, PublishNotConfirmed):
                summary.nacked += 1
            log_event(logger, "simulator.publish_failed", level=logging.WARNING,
                      error=type(error).__name__, waiting=len(backlog))
            return
        backlog.pop(0)
        summary.confirmed += 1


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
