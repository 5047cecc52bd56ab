"""Metrics and health: bounded labels, health verdicts, and the Prometheus and Grafana files.

The files under swarm/prometheus/ name only metrics the services export, and
the local Prometheus configuration scrapes every Procfile process on its port.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml
from prometheus_client import REGISTRY

from common.health import WorkerHealth
from common.metrics import PORT_OFFSETS, HealthCollector, metrics_port, reason_class
from common.settings import load_settings
from tests.processes import ROOT, ServiceProcess, free_port, procfile_commands, wait_for_port

PROMETHEUS = ROOT / "swarm" / "prometheus"
METRIC_NAME = re.compile(r"\b(ems_[a-z0-9_]+)")


def exported_names() -> set[str]:
    """Return every sample name the EMS metrics can produce (counters' _total, histograms' parts)."""
    names = set()
    families = [*REGISTRY.collect(), *HealthCollector().collect()]
    for family in families:
        if not family.name.startswith("ems_"):
            continue
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def rule_expressions(file: str = "rules.yml") -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / file).read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((PROMETHEUS / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_query_names_only_metrics_the_services_export(source):
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    exported = exported_names()
    named = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    assert expressions and named
    assert named <= exported, f"not exported: {sorted(named - exported)}"


def test_the_dashboard_covers_ingestion_alerts_chat_sockets_and_queues():
    named = {name for expression in dashboard_expressions() for name in METRIC_NAME.findall(expression)}
    for metric in ("ems_readings_received_total", "ems_alert_delivery_latency_seconds_bucket",
                   "ems_notifier_chat_events_total", "ems_notifier_sockets_open", "ems_outbox_events"):
        assert metric in named


def test_promtool_accepts_the_rules_and_both_configurations():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus, in scripts/bootstrap.sh)")
    for arguments in (["check", "rules", "rules.yml", "rules.swarm-test.yml"],
                      ["check", "config", "prometheus.yml"], ["check", "config", "prometheus.swarm.yml"]):
        checked = subprocess.run([promtool, *arguments], cwd=PROMETHEUS, capture_output=True, text=True,
                                 timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_swarm_tests_short_window_rules_watch_what_the_production_rules_do():
    """make swarm-test fires a short-window variant: only the `for:` and the interval may differ."""
    assert set(rule_expressions("rules.swarm-test.yml")) <= set(rule_expressions())


def test_the_local_prometheus_scrapes_every_procfile_process_on_its_port(settings):
    """prometheus.yml's targets are exactly the metrics ports of the Procfile's processes."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {int(target.rsplit(":", 1)[1]) for job in config["scrape_configs"]
               for static in job["static_configs"] for target in static["targets"]}
    defaults = load_settings(metrics_port=0, metrics_base_port=9200)
    process_of = {"outbox_relay": "web-relay", "monitor_api": "monitor-api",
                  "support_consumer": "support-consumer", "monitor_events": "monitor-events",
                  "monitor_maintenance": "monitor-maintenance"}
    expected = set()
    for name in procfile_commands():
        if name in ("gateway", "simulator"):
            continue
        process = process_of.get(name, name.replace("_", "-"))
        expected.add(metrics_port(defaults, process))
    assert targets == expected
    assert len(expected) == len(PORT_OFFSETS) + defaults.monitor_replicas


def test_the_swarm_prometheus_scrapes_every_worker_that_has_a_health_check():
    config = yaml.safe_load((PROMETHEUS / "prometheus.swarm.yml").read_text())
    scraped = {name.removeprefix("tasks.") for job in config["scrape_configs"]
               for sd in job["dns_sd_configs"] for name in sd["names"]}
    stack = yaml.safe_load((ROOT / "swarm" / "stack.yml").read_text())
    checked_on_metrics_port = {name for name, service in stack["services"].items()
                               if "9100" in json.dumps(service.get("healthcheck", {}))}
    assert checked_on_metrics_port == {"outbox_relay", "support_consumer", "balancer", "monitor",
                                       "monitor_events", "monitor_maintenance"}
    assert checked_on_metrics_port <= scraped


@pytest.mark.parametrize(("reason", "label"), [
    ("invalid-json: Expecting value", "invalid-json"),
    ("future-timestamp: 1732611600000 is ahead", "future-timestamp"),
    ("conflicting-duplicate: this device and timestamp", "conflicting-duplicate"),
    ("Traceback with a device 0b6d5c7e-1111", "other"),
    ("x" * 300 + ": long", "other"),
    ("", "other"),
])
def test_a_dead_letter_reason_becomes_a_bounded_label(reason, label):
    assert reason_class(reason) == label


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_holding_deliveries_unacked_too_long_is_unhealthy():
    clock = FakeClock()
    health = WorkerHealth(stuck_seconds=10, clock=clock)
    health.set_ready(True)
    health.received()
    clock.now += 9
    health.turned()
    assert health.liveness()[0]
    clock.now += 2
    health.turned()
    assert health.liveness() == (False, "deliveries held and nothing acked for 11 s")
    assert not health.readiness()[0]
    health.acked()
    assert health.liveness()[0] and health.readiness()[0]


def test_an_idle_worker_stays_healthy_while_its_loop_turns_and_not_when_it_stops():
    clock = FakeClock()
    health = WorkerHealth(stuck_seconds=10, clock=clock)
    health.set_ready(True)
    for _ in range(5):
        clock.now += 5
        health.turned()
    assert health.liveness()[0]
    clock.now += 11
    assert not health.liveness()[0]


def test_a_worker_that_lost_its_connection_is_alive_but_not_ready():
    health = WorkerHealth(stuck_seconds=10, clock=FakeClock())
    health.set_ready(True)
    health.received()
    health.set_ready(False)
    assert health.liveness()[0]
    assert health.readiness() == (False, "not connected to the broker and database")


def test_a_gunicorn_app_counts_requests_by_route_template_in_its_master(migrated):
    """Run the monitor API as the Procfile does; its master serves both workers' counts."""
    http_port, metrics = free_port(), free_port()
    command = procfile_commands()["monitor_api"]
    env = {"EMS_MONITOR_API_PORT": str(http_port), "EMS_METRICS_PORT": str(metrics)}
    with ServiceProcess(["bash", "-c", "exec " + command], name="monitor_api-metrics", env=env) as api:
        wait_for_port(http_port, process=api.process)
        wait_for_port(metrics, process=api.process)
        for _ in range(6):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/monitor/summary", timeout=5)
            except urllib.error.HTTPError as error:
                assert error.code == 401
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    line = 'ems_http_requests_total{method="GET",route="/api/monitor/summary",status="401"} 6.0'
    assert line in text.splitlines()
