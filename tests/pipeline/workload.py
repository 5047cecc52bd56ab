"""The test workload: readings for many devices, some delivered twice, some invalid,
with the exact hourly totals they must produce."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

TEN_MINUTES_MS = 600_000


@dataclass
class Workload:
    messages: list[bytes]  # in publish order: valid, duplicated and invalid, shuffled
    invalid: list[bytes]
    expected_hourly: dict[tuple[str, datetime], Decimal]
    distinct_readings: int
    valid_messages: int


def _invalid_bodies(count: int, rng: random.Random, device_ids: list[str], now_ms: int) -> list[bytes]:
    """Return `count` distinct invalid messages of every kind of mistake."""
    kinds = [
        lambda n: b"{not json " + str(n).encode(),
        lambda n: json.dumps({"timestamp": now_ms - n, "device_id": rng.choice(device_ids)}).encode(),
        lambda n: json.dumps({"timestamp": now_ms - n, "device_id": rng.choice(device_ids),
                              "measurement_value": -1 - n}).encode(),
        lambda n: json.dumps({"timestamp": now_ms - n, "device_id": f"meter-{n}",
                              "measurement_value": 0.1}).encode(),
        lambda n: json.dumps({"timestamp": now_ms - n, "device_id": rng.choice(device_ids),
                              "measurement_value": 1e6 + n}).encode(),
        lambda n: (b'{"timestamp": %d, "device_id": "%s", "measurement_value": NaN}'
                   % (now_ms - n, rng.choice(device_ids).encode())),
        lambda n: json.dumps({"timestamp": "yesterday", "device_id": rng.choice(device_ids),
                              "measurement_value": 0.1, "n": n}).encode(),
    ]
    return [kinds[n % len(kinds)](n) for n in range(count)]


def build_workload(readings: int = 20_000, devices: int = 50, duplicate_share: float = 0.10,
                   invalid_share: float = 0.01, seed: int = 7) -> Workload:
    """Return a shuffled workload of `readings` distinct messages plus duplicates."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) // TEN_MINUTES_MS * TEN_MINUTES_MS
    device_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(devices)]
    invalid = _invalid_bodies(int(readings * invalid_share), rng, device_ids, now_ms)
    valid = []
    expected: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
    for index in range(readings - len(invalid)):
        device_id = device_ids[index % devices]
        stamp = now_ms - (index // devices) * TEN_MINUTES_MS
        value = round(rng.uniform(0.0, 0.6), 4)
        valid.append(json.dumps({"timestamp": stamp, "device_id": device_id,
                                 "measurement_value": value}).encode())
        hour = datetime.fromtimestamp(stamp // 3_600_000 * 3600, tz=UTC).replace(tzinfo=None)
        expected[(device_id, hour)] += Decimal(str(value))
    duplicates = rng.sample(valid, int(len(valid) * duplicate_share))
    messages = valid + duplicates + invalid
    rng.shuffle(messages)
    return Workload(messages=messages, invalid=invalid, expected_hourly=dict(expected),
                    distinct_readings=len(valid), valid_messages=len(valid) + len(duplicates))
