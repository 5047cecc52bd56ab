"""The simulator's command line against the real broker: what each mode sends."""

from __future__ import annotations

import json
import subprocess
import uuid

from common.topology import READINGS_QUEUE
from tests.processes import ROOT, python_module

DEVICE = str(uuid.uuid4())


def simulate(*arguments: str) -> str:
    """Run `python -m simulator …` and return its summary line."""
    finished = subprocess.run(python_module("simulator", *arguments), cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.strip()


def queued_readings(pipeline) -> list[dict]:
    return [json.loads(body) for _, body in pipeline.drain(READINGS_QUEUE)]


def test_load_sends_the_count_with_confirms(pipeline):
    summary = simulate("load", "--devices", "3", "--count", "30")
    assert summary.startswith("sent=30 confirmed=30 ")
    readings = queued_readings(pipeline)
    assert len(readings) == 30
    assert len({r["device_id"] for r in readings}) == 3
    assert len({(r["device_id"], r["timestamp"]) for r in readings}) == 30


def test_replay_sends_every_csv_row_as_ten_minute_history(pipeline, tmp_path):
    csv = tmp_path / "sensor.csv"
    csv.write_text("kwh\n0.1\n0.25\n0.3\n")
    assert simulate("replay", "--csv", str(csv), "--device", DEVICE).startswith("sent=3 confirmed=3 ")
    readings = queued_readings(pipeline)
    assert [r["measurement_value"] for r in readings] == [0.1, 0.25, 0.3]
    assert [b["timestamp"] - a["timestamp"] for a, b in zip(readings, readings[1:], strict=False)] == [
        600_000, 600_000]


def test_backfill_sends_a_day_of_readings_per_device(pipeline):
    assert simulate("backfill", "--days", "1", "--device", DEVICE).startswith("sent=144 confirmed=144 ")
    readings = queued_readings(pipeline)
    assert len(readings) == 144 and all(0 < r["measurement_value"] < 5 for r in readings)


def test_live_stamps_readings_now(pipeline):
    assert simulate("live", "--interval", "0.2", "--count", "2", "--device", DEVICE).startswith("sent=2 ")
    assert len(queued_readings(pipeline)) == 2


def test_paced_replay_sends_one_row_per_interval_stamped_now(pipeline, tmp_path):
    csv = tmp_path / "sensor.csv"
    csv.write_text("0.1\n0.2\n0.3\n")
    summary = simulate("replay", "--csv", str(csv), "--interval", "0.1", "--device", DEVICE)
    assert summary.startswith("sent=3 confirmed=3 ")
    readings = queued_readings(pipeline)
    assert [r["measurement_value"] for r in readings] == [0.1, 0.2, 0.3]


def test_the_demo_reads_every_page_of_devices_from_the_portal_as_an_admin(pipeline):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from common.auth import decode_access_token

    pages = {1: [{"id": str(uuid.uuid4()), "max_hourly_kwh": 3.5}],
             2: [{"id": str(uuid.uuid4()), "max_hourly_kwh": 0.5}]}
    seen_roles = []

    class FakePortal(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            token = self.headers["Authorization"].removeprefix("Bearer ")
            seen_roles.append(decode_access_token(token, pipeline.settings).role)
            page = int(self.path.rsplit("page=", 1)[1])
            body = json.dumps({"items": pages[page], "page": page, "pages": 2, "total": 2}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *arguments):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePortal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        finished = subprocess.run(python_module("simulator", "live", "--demo", "--count", "1"), cwd=ROOT,
                                  capture_output=True, text=True, timeout=60,
                                  env={**__import__("os").environ,
                                       "EMS_WEB_URL": f"http://127.0.0.1:{server.server_port}"})
    finally:
        server.shutdown()
    assert finished.returncode == 0, finished.stderr
    assert seen_roles == ["admin", "admin"]
    readings = queued_readings(pipeline)
    assert {r["device_id"] for r in readings} == {pages[1][0]["id"], pages[2][0]["id"]}


def test_backfill_scales_a_device_with_a_given_limit_to_stay_mostly_below_it(pipeline):
    assert simulate("backfill", "--days", "2", "--device", f"{DEVICE}=0.5").startswith("sent=288 ")
    readings = queued_readings(pipeline)
    hourly: dict[int, float] = {}
    for reading in readings:
        hour = (reading["timestamp"] - 1) // 3_600_000
        hourly[hour] = hourly.get(hour, 0.0) + reading["measurement_value"]
    over = [kwh for kwh in hourly.values() if kwh > 0.5]
    # The model's evening peak sits near half the limit: a rare hour over, never most of them.
    assert len(over) <= len(hourly) // 10, sorted(hourly.values())
