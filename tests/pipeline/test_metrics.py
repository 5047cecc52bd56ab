"""Metrics and health of the pipeline's real processes, scraped from their metrics ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.pipeline.conftest import REPLICAS, wait_for
from tests.pipeline.workload import build_workload
from tests.processes import ROOT, ServiceProcess, free_port, python_module

HEALTHCHECK = [sys.executable, str(ROOT / "swarm" / "healthcheck.py")]
# Every series a pipeline process exports, whatever the number of devices: a bound well above
# today's count (histogram buckets included), far below one series per device.
MAX_SERIES_PER_PROCESS = 400


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Return every sample of a process's /metrics as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(samples: dict, name: str, **labels) -> float:
    """Return the sum of a metric's samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and wanted <= set(sample_labels))


def status(port: int, path: str) -> int:
    """Return the HTTP status of a health endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def healthcheck_passes(port: int) -> bool:
    """Run the Swarm stack's health check command against a metrics port."""
    checked = subprocess.run([*HEALTHCHECK, str(port), "/healthz"], capture_output=True, timeout=30)
    return checked.returncode == 0


def start_with_metrics(pipeline, name: str, command: list[str], env: dict | None = None) -> int:
    """Start a pipeline process on a metrics port of its own; return the port once it is ready."""
    port = free_port()
    process = ServiceProcess(command, name=name, env={"EMS_METRICS_PORT": str(port), **(env or {})}).start()
    if name == "balancer":
        pipeline.balancer = process
    else:
        pipeline.workers[int(name.rsplit("-", 1)[1])] = process
    wait_for(lambda: _answers(port) and status(port, "/readyz") == 200, 30,
             f"{name} ready on its metrics port\n{pipeline.logs()}", interval=0.2)
    return port


def _answers(port: int) -> bool:
    try:
        status(port, "/healthz")
        return True
    except OSError:
        return False


def test_pipeline_counters_move_and_stay_bounded_with_1000_devices(pipeline):
    """Scrape the balancer and every replica during a run of 1,000 devices' readings."""
    workload = build_workload(readings=3000, devices=1000, duplicate_share=0.1, invalid_share=0.02)
    ports = {"balancer": start_with_metrics(pipeline, "balancer", python_module("balancer"))}
    for replica in range(1, REPLICAS + 1):
        ports[f"monitor-{replica}"] = start_with_metrics(
            pipeline, f"monitor-{replica}", python_module("monitor", "worker", "--replica", str(replica)))
    before = {name: scrape(port) for name, port in ports.items()}

    pipeline.publish_readings(workload.messages)

    def settled():
        replicas = [scrape(ports[f"monitor-{n}"]) for n in range(1, REPLICAS + 1)]
        handled = sum(total(s, "ems_readings_stored_total") + total(s, "ems_readings_duplicate_total")
                      for s in replicas)
        return handled >= workload.valid_messages
    wait_for(settled, 60, f"every valid reading stored or found duplicate\n{pipeline.logs()}", interval=0.5)
    after = {name: scrape(port) for name, port in ports.items()}

    balancer, monitors = after["balancer"], [after[f"monitor-{n}"] for n in range(1, REPLICAS + 1)]
    received = total(balancer, "ems_readings_received_total") - total(before["balancer"],
                                                                      "ems_readings_received_total")
    assert received == len(workload.messages)
    assert total(balancer, "ems_readings_routed_total") == workload.valid_messages
    # What the balancer routed to a replica is what that replica stored or found duplicate.
    for replica, samples in enumerate(monitors, start=1):
        assert total(balancer, "ems_readings_routed_total", replica=str(replica)) == (
            total(samples, "ems_readings_stored_total", replica=str(replica))
            + total(samples, "ems_readings_duplicate_total", replica=str(replica)))
    assert sum(total(s, "ems_readings_stored_total") for s in monitors) == workload.distinct_readings
    assert sum(total(s, "ems_readings_duplicate_total") for s in monitors) == (
        workload.valid_messages - workload.distinct_readings)
    assert total(balancer, "ems_dead_letters_total", queue="readings.incoming") == len(workload.invalid)
    assert sum(total(s, "ems_monitor_batch_readings_count") for s in monitors) > 0
    assert sum(total(s, "ems_reading_commit_latency_seconds_count") for s in monitors) >= (
        workload.distinct_readings)

    device_ids = {message.split(b'"device_id": "')[1][:36].decode()
                  for message in workload.messages if b'"device_id": "' in message}
    for name, samples in after.items():
        assert len(samples) <= MAX_SERIES_PER_PROCESS, f"{name} exports {len(samples)} series"
        label_values = {value for _, labels in samples for _, value in labels}
        assert not label_values & device_ids, f"{name} labels a series with a device"
        # Reason classes only: never a message's content in a label.
        reasons = {value for _, labels in samples for key, value in labels if key == "reason"}
        assert all(len(reason) <= 40 and ":" not in reason for reason in reasons)


def test_a_frozen_worker_fails_the_stack_health_check(pipeline):
    """SIGSTOP a replica: its health check times out, as Swarm's would; SIGCONT brings it back."""
    port = start_with_metrics(pipeline, "monitor-1", python_module("monitor", "worker", "--replica", "1"))
    assert healthcheck_passes(port)
    process = pipeline.workers[1].process
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        assert not healthcheck_passes(port)
    finally:
        os.killpg(process.pid, signal.SIGCONT)
    wait_for(lambda: healthcheck_passes(port), 15, "the thawed replica healthy again")


def test_a_consumer_holding_deliveries_without_acking_reports_unhealthy(pipeline):
    """A replica that takes readings and acks none for EMS_STUCK_SECONDS is unhealthy, an idle one is not."""
    stuck_seconds = {"EMS_STUCK_SECONDS": "2"}
    stalled = start_with_metrics(pipeline, "monitor-1", python_module("monitor", "worker", "--replica", "1"),
                                 env={**stuck_seconds, "EMS_FAULT_STALL_CONSUMER": "1"})
    idle = start_with_metrics(pipeline, "monitor-2", python_module("monitor", "worker", "--replica", "2"),
                              env=stuck_seconds)
    workload = build_workload(readings=10, devices=2, duplicate_share=0, invalid_share=0)
    pipeline.publish_raw("ems.ingest", "replica.1", workload.messages)

    wait_for(lambda: status(stalled, "/healthz") == 503, 15,
             f"the stalled replica unhealthy\n{pipeline.logs()}")
    assert status(stalled, "/readyz") == 503
    assert total(scrape(stalled), "ems_worker_healthy") == 0
    assert not healthcheck_passes(stalled)
    # Idle for longer than the threshold, with nothing waiting: still healthy.
    assert status(idle, "/healthz") == 200
    assert total(scrape(idle), "ems_worker_healthy") == 1
