"""The Swarm stack file: Docker accepts it, and Traefik routes as DESIGN.md says.

`docker stack config` (the Docker CLI, no daemon needed) validates and
interpolates swarm/stack.yml; the tests read its output, so they check what
Swarm would deploy, not what the YAML looks like.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "swarm" / "stack.yml"
TEST_OVERRIDE = ROOT / "swarm" / "stack.test.yml"
DESIGN = ROOT.parent / "shared" / "DESIGN.md"

# DESIGN.md, "Contract: processes, ports, routes" (checked against the file below
# when it is present): process -> (port, path prefixes routed to it).
ROUTES = {
    "web": (5000, ["/"]),
    "support": (5001, ["/support", "/api/support"]),
    "notifier": (5002, ["/socket.io"]),
    "monitor_api": (5003, ["/monitor", "/api/monitor"]),
}
DESIGN_PROCESS_NAMES = {"web": "web", "support": "support", "notifier": "notifier",
                        "monitor API": "monitor_api"}
EMS_SERVICES = {"migrate", "web", "support", "support_consumer", "notifier", "monitor_api",
                "outbox_relay", "balancer", "monitor", "monitor_events", "monitor_maintenance", "simulator"}


def _docker_cli() -> str:
    """Return a Docker CLI that has `docker stack config`, or skip the test."""
    candidates = [shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"]
    found = [c for c in dict.fromkeys(candidates) if c and os.access(c, os.X_OK)]
    if not found:
        pytest.skip("the docker CLI is not installed (apt-get install docker.io): "
                    "cannot validate swarm/stack.yml")
    for cli in found:
        probe = subprocess.run([cli, "stack", "config", "--help"], capture_output=True, text=True)
        if probe.returncode == 0:
            return cli
    pytest.skip(f"no docker CLI here has `docker stack config` (tried {found}; it needs Docker 23+)")


def stack_config(*files: Path, **env: str) -> dict:
    """Return the stack as `docker stack config` interpolates and merges it."""
    arguments = [_docker_cli(), "stack", "config"]
    for file in files:
        arguments += ["-c", str(file)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMS_")}
    result = subprocess.run(arguments, capture_output=True, text=True, env={**clean, **env},
                            timeout=60)
    assert result.returncode == 0, f"docker stack config refused the stack:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def stack() -> dict:
    return stack_config(STACK_FILE)


# --- Traefik rules ------------------------------------------------------------

_MATCHER = re.compile(r"\s*(Path|PathPrefix)\(`([^`]*)`\)\s*")


def rule_matches(rule: str, path: str) -> bool:
    """Evaluate a Traefik rule made of Path/PathPrefix matchers joined by ||."""
    matched = False
    for alternative in rule.split("||"):
        found = _MATCHER.fullmatch(alternative)
        assert found, f"unexpected Traefik rule syntax in {rule!r}: {alternative!r}"
        kind, value = found.groups()
        matched |= path == value if kind == "Path" else path.startswith(value)
    return matched


def traefik_routers(stack: dict) -> dict:
    """Return {router: (service name, rule, priority, port)} from the services' labels."""
    routers = {}
    for name, service in stack["services"].items():
        labels = service.get("deploy", {}).get("labels", {})
        if labels.get("traefik.enable") != "true":
            continue
        for key, rule in labels.items():
            found = re.fullmatch(r"traefik\.http\.routers\.([\w-]+)\.rule", key)
            if not found:
                continue
            router = found.group(1)
            target = labels[f"traefik.http.routers.{router}.service"]
            port = labels[f"traefik.http.services.{target}.loadbalancer.server.port"]
            priority = int(labels.get(f"traefik.http.routers.{router}.priority", len(rule)))
            routers[router] = (name, rule, priority, int(port))
    return routers


def route(stack: dict, path: str) -> tuple[str, int]:
    """Return the (service, port) Traefik picks for a request path."""
    candidates = [(priority, name, port) for name, rule, priority, port
                  in traefik_routers(stack).values() if rule_matches(rule, path)]
    assert candidates, f"no router matches {path}"
    candidates.sort(reverse=True)
    if len(candidates) > 1:
        assert candidates[0][0] != candidates[1][0], f"{path}: routers tie on priority: {candidates}"
    _, name, port = candidates[0]
    return name, port


def request_paths() -> list[tuple[str, str]]:
    """Return (path, process) pairs that follow from the routes table."""
    pairs = [("/", "web"), ("/login", "web"), ("/static/js/ems.js", "web"), ("/api/devices", "web")]
    for process, (_, prefixes) in ROUTES.items():
        for prefix in prefixes:
            if prefix == "/":
                continue
            pairs += [(prefix, process), (prefix + "/", process), (prefix + "/x/y?z=1", process),
                      # A longer word is not below the prefix: it stays with web.
                      (prefix + "ing", "web")]
    return pairs


def test_design_routes_table_is_the_one_these_tests_check():
    if not DESIGN.exists():
        pytest.skip(f"{DESIGN} is not beside the repository; the copy in this test is used")
    rows = {}
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].isdigit() and cells[0] in DESIGN_PROCESS_NAMES:
            rows[DESIGN_PROCESS_NAMES[cells[0]]] = (int(cells[1]), re.findall(r"`([^`]+)`", cells[2]))
    assert rows == ROUTES


def test_docker_accepts_the_production_stack(stack):
    assert EMS_SERVICES | {"traefik", "db", "rabbitmq", "prometheus"} == set(stack["services"])


@pytest.mark.parametrize(("path", "process"), request_paths())
def test_traefik_routes_each_path_to_its_service(stack, path, process):
    assert route(stack, path) == (process, ROUTES[process][0])


def test_notifier_sessions_are_sticky(stack):
    labels = stack["services"]["notifier"]["deploy"]["labels"]
    assert labels["traefik.http.services.notifier.loadbalancer.sticky.cookie"] == "true"
    assert labels["traefik.http.services.notifier.loadbalancer.sticky.cookie.httponly"] == "true"


def test_traefik_is_the_only_published_entry(stack):
    published = {name for name, service in stack["services"].items() if service.get("ports")}
    assert published == {"traefik"}
    assert {p["target"]: p["published"] for p in stack["services"]["traefik"]["ports"]} == {80: 80, 443: 443}
    command = stack["services"]["traefik"]["configs"][0]["source"]
    assert command == "traefik_start"


def test_https_with_lets_encrypt_and_redirect_when_a_domain_is_set():
    script = (ROOT / "swarm" / "traefik-start.sh").read_text(encoding="utf-8")
    assert "--providers.swarm=true" in script
    assert "--providers.swarm.exposedByDefault=false" in script
    https = script.split('if [ -n "${EMS_DOMAIN}" ] && [ -n "${EMS_ACME_EMAIL}" ]; then', 1)[1]
    assert "--entrypoints.web.http.redirections.entrypoint.to=websecure" in https
    assert "--certificatesresolvers.letsencrypt.acme.email=" in https
    env = stack_config(STACK_FILE, EMS_DOMAIN="ems.example.org", EMS_ACME_EMAIL="ops@example.org")
    assert env["services"]["traefik"]["environment"]["EMS_DOMAIN"] == "ems.example.org"


def test_back_end_network_is_internal_and_only_traefik_is_on_the_public_one(stack):
    assert stack["networks"]["backend"]["internal"] is True
    on_public = {name for name, service in stack["services"].items()
                 if "public" in service.get("networks", {})}
    assert on_public == {"traefik"}


def test_every_service_has_a_memory_limit_and_a_restart_policy(stack):
    for name, service in stack["services"].items():
        deploy = service["deploy"]
        assert deploy["resources"]["limits"]["memory"], name
        assert deploy["restart_policy"]["condition"], name


def test_long_running_services_roll_one_task_at_a_time(stack):
    for name, service in stack["services"].items():
        if name == "migrate":
            continue
        assert service["deploy"]["update_config"]["parallelism"] == 1, name


def test_ems_services_run_in_production_with_their_secrets_as_files(stack):
    for name in EMS_SERVICES:
        service = stack["services"][name]
        environment = service["environment"]
        secrets = {s["source"] for s in service["secrets"]}
        assert environment["EMS_ENV"] == "production", name
        for variable, secret in [("EMS_JWT_SECRET_FILE", "ems_jwt_secret"),
                                 ("EMS_DB_PASSWORD_FILE", "ems_db_password"),
                                 ("EMS_LLM_API_KEY_FILE", "ems_llm_api_key")]:
            assert environment[variable] == f"/run/secrets/{secret}", name
            assert secret in secrets, name
        assert not any(key in environment for key in
                       ("EMS_JWT_SECRET", "EMS_DB_PASSWORD", "EMS_LLM_API_KEY")), name
    assert all(spec.get("external") for spec in stack["secrets"].values())


def test_migrations_run_once_as_a_job_that_the_services_wait_for(stack):
    migrate = stack["services"]["migrate"]
    assert migrate["deploy"]["mode"] == "replicated-job"
    assert migrate["command"] == ["python", "-m", "migrations", "upgrade"]
    for name in ("web", "support", "monitor_api", "monitor", "monitor_events", "outbox_relay"):
        assert "migrations" in stack["services"][name]["environment"]["EMS_WAIT_FOR"].split(","), name


def test_replica_counts(stack):
    replicas = {name: service["deploy"].get("replicas") for name, service in stack["services"].items()}
    assert {k: replicas[k] for k in ("web", "support", "notifier", "monitor_api", "monitor",
                                     "balancer", "simulator")} == {
        "web": 2, "support": 2, "notifier": 2, "monitor_api": 2, "monitor": 3,
        "balancer": 1, "simulator": 1}


def test_each_monitor_task_consumes_the_queue_of_its_slot(stack):
    monitor = stack["services"]["monitor"]
    assert monitor["environment"]["EMS_REPLICA"] == "{{.Task.Slot}}"
    assert '--replica "$EMS_REPLICA"' in " ".join(monitor["command"])


def test_balancer_feeds_as_many_queues_as_there_are_monitors():
    scaled = stack_config(STACK_FILE, EMS_MONITOR_REPLICAS="5")["services"]
    assert scaled["monitor"]["deploy"]["replicas"] == 5
    assert scaled["balancer"]["environment"]["EMS_MONITOR_REPLICAS"] == "5"
    assert scaled["monitor"]["environment"]["EMS_MONITOR_REPLICAS"] == "5"


def test_test_override_only_swaps_images_and_the_gateway(stack):
    override = yaml.safe_load(TEST_OVERRIDE.read_text(encoding="utf-8"))["services"]
    for name, service in override.items():
        if name == "gateway":
            continue
        if name == "prometheus":  # published for swarm/check.py, with the short-window rules added
            assert set(service) <= {"image", "ports", "networks", "configs"}
            continue
        assert set(service) <= {"image", "deploy"}, name
        assert set(service.get("deploy", {})) <= {"replicas"}, name
    merged = stack_config(STACK_FILE, TEST_OVERRIDE)
    production_rules = stack["services"]["prometheus"]["configs"]
    assert all(config in merged["services"]["prometheus"]["configs"] for config in production_rules)
    for name in set(stack["services"]) - {"traefik", "prometheus"}:
        expected = dict(stack["services"][name])
        actual = dict(merged["services"][name])
        expected.pop("image")
        actual.pop("image")
        assert actual == expected, name


def test_test_gateway_has_the_same_routes_as_the_local_one():
    def matchers(text: str) -> list[str]:
        return re.findall(r"^\s*@\w+ path .*$", text, flags=re.MULTILINE)

    local = matchers((ROOT / "Caddyfile").read_text(encoding="utf-8"))
    test = matchers((ROOT / "swarm" / "images" / "caddy" / "Caddyfile").read_text(encoding="utf-8"))
    assert [line.strip() for line in test] == [line.strip() for line in local]


def test_a_stopping_monitor_has_time_to_drain_its_queue(stack):
    from monitor.worker import DRAIN_SECONDS

    grace = stack["services"]["monitor"].get("stop_grace_period", "10s")
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > DRAIN_SECONDS + 2


def test_scaling_monitors_needs_only_docker_service_scale():
    script = (ROOT / "swarm" / "scale-monitors.sh").read_text()
    commands = [line.strip() for line in script.splitlines()
                if re.match(r"\s*docker service (scale|update|create)", line)]
    # The replica count is the one thing that changes: no service is updated (restarted) for it.
    assert commands == ['docker service scale --detach=false "${STACK}_monitor=$N" >/dev/null']
    assert "--env-add" not in script
