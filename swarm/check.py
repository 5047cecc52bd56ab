"""Check a deployed EMS stack end to end through its gateway (run by swarm/test.sh).

    python swarm/check.py --stack ems --url http://127.0.0.1:8090

1. Every service reaches its replica count and health; the migration job completes.
2. The demo data is seeded (a one-off command in a web task); an administrator
   logs in through the gateway; the stack's live simulator feeds a demo device,
   then it is paused so that test devices get only the replayed readings; a
   device is created with the JSON API.
3. The simulator replays known readings for that device; the monitor API shows
   the exact hourly totals and an over-consumption alert, which also reaches an
   administrator's Socket.IO session (long-polling through the sticky gateway).
4. A monitor task is killed (`docker kill`) while a second, larger replay is
   being consumed: Swarm replaces it and every hourly total is still exact.
5. Prometheus (Swarm DNS discovery) scrapes every task of every service, up.
6. A monitor task is frozen (SIGSTOP): Prometheus fires EmsWorkerUnhealthy for
   it (the short-window variant of rules.swarm-test.yml; the production rule is
   seen pending or firing too), Swarm's health check replaces it, and Prometheus
   scrapes the replacement.
Every wait is bounded; the first failed check stops the run with its reason.
The last line counts the checks: `swarm-checks: N passed, M failed`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import requests
import socketio
import yaml

INTERVAL_MS = 10 * 60 * 1000
DEMO_ADMIN = {"email": "admin@ems.local", "password": "admin-demo-2024"}
# A login hashes a password: seconds while about 25 tasks share a loaded 2-core machine.
REQUEST_TIMEOUT = 30
PROMETHEUS_CONFIG = pathlib.Path(__file__).parent / "prometheus" / "prometheus.swarm.yml"


class CheckFailed(AssertionError):
    """A check of the stack did not hold."""


PASSED: list[str] = []


def say(message: str) -> None:
    """Print one progress line."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def passed(message: str) -> None:
    """Print one line for a check that held, and count it."""
    PASSED.append(message)
    say(f"ok {len(PASSED)}: {message}")


def wait_until(what: str, condition, timeout: float, interval: float = 2.0):
    """Return condition()'s first truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (requests.RequestException, CheckFailed, subprocess.CalledProcessError, ValueError,
                KeyError) as error:
            last_error = error
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}"
                      + (f" (last error: {last_error})" if last_error else ""))


def docker(*arguments: str, stdin: str | None = None) -> str:
    """Run a docker command and return its output."""
    result = subprocess.run(["docker", *arguments], capture_output=True, text=True, input=stdin,
                            timeout=300)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, ["docker", *arguments],
                                            result.stdout, result.stderr)
    return result.stdout


# --- Swarm ------------------------------------------------------------------


def service_replicas(stack: str) -> dict[str, str]:
    """Return {service: "running/desired"} as `docker stack services` shows it."""
    lines = docker("stack", "services", stack, "--format", "{{.Name}} {{.Replicas}}").splitlines()
    return {line.split()[0].removeprefix(f"{stack}_"): " ".join(line.split()[1:]) for line in lines}


def all_services_up(stack: str) -> bool:
    """Tell whether every service runs its desired tasks and the migration job completed."""
    pending = []
    for name, replicas in service_replicas(stack).items():
        if "completed" in replicas:  # a job: "0/1 (1/1 completed)"
            done = replicas.split("(")[1].split()[0]
            if done.split("/")[0] != done.split("/")[1]:
                pending.append(f"{name} {replicas}")
        else:
            running, desired = replicas.split()[0].split("/")
            if running != desired:
                pending.append(f"{name} {replicas}")
    if pending:
        raise CheckFailed("not yet up: " + ", ".join(sorted(pending)))
    return True


def running_container(stack: str, service: str, slot: int | None = None) -> str:
    """Return the id of a running container of a service's task (of one slot if given)."""
    name = f"{stack}_{service}" + (f".{slot}." if slot else ".")
    for line in docker("ps", "--filter", f"label=com.docker.swarm.service.name={stack}_{service}",
                       "--format", "{{.ID}} {{.Names}}").splitlines():
        container, container_name = line.split()
        if container_name.startswith(name):
            return container
    raise CheckFailed(f"no running container for {name}")


def task_ids(stack: str, service: str, slot: int) -> set[str]:
    """Return the ids of the running tasks of one slot of a service."""
    lines = docker("service", "ps", f"{stack}_{service}", "--filter", "desired-state=running",
                   "--format", "{{.ID}} {{.Name}} {{.CurrentState}}").splitlines()
    return {line.split()[0] for line in lines
            if line.split()[1] == f"{stack}_{service}.{slot}" and line.split()[2] == "Running"}


# --- the portal and the monitor API through the gateway ---------------------


class Gateway:
    """An administrator's API session through the gateway."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.http = requests.Session()

    def login(self, email: str, password: str) -> None:
        """Log in with the JSON API and use the token from then on."""
        response = self.http.post(f"{self.url}/api/auth/login", json={"email": email, "password": password},
                                  timeout=REQUEST_TIMEOUT)
        if response.status_code != 200:
            raise CheckFailed(f"login through the gateway answered {response.status_code}: "
                              f"{response.text[:200]}")
        self.token = response.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path: str, **params) -> requests.Response:
        """GET a path through the gateway."""
        return self.http.get(f"{self.url}{path}", params=params, timeout=REQUEST_TIMEOUT)

    def post(self, path: str, body: dict) -> requests.Response:
        """POST JSON through the gateway."""
        return self.http.post(f"{self.url}{path}", json=body, timeout=REQUEST_TIMEOUT)


def hourly_totals(gateway: Gateway, device_id: str, days: list[str]) -> dict[str, Decimal]:
    """Return {hour start (UTC ISO): kWh} from the monitor API's hourly endpoint for those days."""
    totals: dict[str, Decimal] = {}
    for day in days:
        response = gateway.get(f"/api/monitor/devices/{device_id}/hourly", date=day, tz="UTC")
        if response.status_code != 200:
            raise CheckFailed(f"hourly {day}: HTTP {response.status_code} {response.text[:200]}")
        for hour in hours_of(response.json()):
            start = parse_hour(hour)
            value = Decimal(str(hour.get("kwh", hour.get("total_kwh", hour.get("value", 0)))))
            if value:
                totals[start] = value
    return totals


def hours_of(payload) -> list[dict]:
    """Return the list of hour rows of an hourly response."""
    if isinstance(payload, list):
        return payload
    for key in ("hours", "items", "hourly"):
        if isinstance(payload.get(key), list):
            return payload[key]
    raise CheckFailed(f"unexpected hourly response: {json.dumps(payload)[:300]}")


def parse_hour(hour: dict) -> str:
    """Return the UTC ISO start of an hour row."""
    for key in ("start_utc", "hour_utc", "start", "hour"):
        if key in hour:
            value = hour[key]
            if isinstance(value, (int, float)):
                return datetime.fromtimestamp(value / 1000, tz=UTC).isoformat()
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC).isoformat()
    raise CheckFailed(f"hour row without a start: {hour}")


# --- readings -------------------------------------------------------------


def history_stamps(count: int, end_ms: int) -> list[int]:
    """Return the timestamps the simulator's replay gives `count` values ending at `end_ms`."""
    last = end_ms // INTERVAL_MS * INTERVAL_MS
    return [last - (count - 1 - index) * INTERVAL_MS for index in range(count)]


def expected_hourly(values: list[Decimal], end_ms: int) -> dict[str, Decimal]:
    """Return {hour start (UTC ISO): kWh} for a replay of `values` ending at `end_ms`."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for stamp, value in zip(history_stamps(len(values), end_ms), values, strict=True):
        # The monitor counts a reading in the UTC clock hour of its timestamp.
        at = datetime.fromtimestamp(stamp / 1000, tz=UTC).replace(minute=0, second=0, microsecond=0)
        totals[at.isoformat()] += value
    return dict(totals)


def replay_command(device_id: str) -> list[str]:
    """Return the docker exec argv that replays a CSV from stdin for one device."""
    return ["sh", "-c", f"cat > /tmp/replay-{device_id}.csv && python -m simulator replay "
                        f"--csv /tmp/replay-{device_id}.csv --device {device_id}"]


def start_replay(stack: str, device_id: str, values: list[Decimal]) -> tuple[subprocess.Popen, int]:
    """Start the simulator's replay of `values` in a running task; return it and its end time."""
    csv = "kwh\n" + "\n".join(str(value) for value in values) + "\n"
    # The simulator's own task, idle by now: only it holds the simulator's broker password.
    container = running_container(stack, "simulator")
    end_ms = int(time.time() * 1000)
    process = subprocess.Popen(["docker", "exec", "-i", container, *replay_command(device_id)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    process.stdin.write(csv)
    process.stdin.close()
    return process, end_ms


def finish_replay(process: subprocess.Popen, values: list[Decimal], started_ms: int) -> list[dict]:
    """Wait for a replay; return the hourly totals it may have produced (one or two candidates).

    The simulator stamps the history from its own clock, somewhere between the
    start and the end of the replay: when a 10-minute mark falls in between,
    either end is possible, and the stored totals must equal one of the two exactly.
    """
    if process.wait(timeout=300) != 0:
        raise CheckFailed(f"simulator replay failed: {process.stderr.read()[-500:]}")
    finished_ms = int(time.time() * 1000)
    candidates = [expected_hourly(values, started_ms)]
    if finished_ms // INTERVAL_MS != started_ms // INTERVAL_MS:
        candidates.append(expected_hourly(values, finished_ms))
    return candidates


def exact_totals(gateway: Gateway, device_id: str, candidates: list[dict]) -> dict[str, Decimal]:
    """Return the candidate the stored hourly totals equal exactly; fail with the gap if none."""
    days = sorted({day for candidate in candidates for day in days_covered(candidate)})
    actual = hourly_totals(gateway, device_id, days)
    for candidate in candidates:
        if actual == candidate:
            return candidate
    missing = sum(candidates[0].values()) - sum(actual.values())
    raise CheckFailed(f"{len(actual)}/{len(candidates[0])} hours stored, {missing} kWh short of the total")


def days_covered(expected: dict[str, Decimal]) -> list[str]:
    """Return the UTC dates the expected hours fall on."""
    return sorted({hour[:10] for hour in expected})


# --- the checks -------------------------------------------------------------


def check_stack_up(stack: str, url: str) -> None:
    """Wait for every service and for the gateway's routes."""
    # About 25 tasks start at once, CPU-bound: minutes on a loaded 2-core machine.
    wait_until("every service to run its tasks", lambda: all_services_up(stack), timeout=900, interval=5)
    passed("every service runs its desired tasks; the migration job completed")
    expectations = {"/login": {200}, "/api/monitor/summary": {401}, "/support/inbox": {302, 401},
                    "/socket.io/?EIO=4&transport=polling": {200}}
    for path, statuses in expectations.items():
        wait_until(f"{path} through the gateway", lambda p=path, s=statuses:
                   requests.get(url + p, timeout=5, allow_redirects=False).status_code in s, timeout=120)
    passed(f"gateway routes answer: {', '.join(expectations)}")


def seed_and_login(stack: str, url: str) -> Gateway:
    """Seed the demo accounts in a web task and log in as the administrator."""
    docker("exec", running_container(stack, "web"), "python", "-m", "web", "seed")
    gateway = Gateway(url)
    gateway.login(**DEMO_ADMIN)
    me = gateway.get("/api/me").json()
    if me.get("role") != "admin":
        raise CheckFailed(f"/api/me after login: {me}")
    passed(f"logged in through the gateway as {me.get('email', DEMO_ADMIN['email'])}")
    return gateway


def check_live_simulator_then_pause_it(stack: str, gateway: Gateway) -> None:
    """Wait for the stack's live simulator to feed a demo device, then make its task idle.

    The live simulator sends readings for every device it found at start: paused,
    it cannot add to the test devices, whose totals must be exactly the replays'.
    Its task stays, idle: only it holds the simulator's broker password, so the
    replays run in it.
    """
    devices = [device["id"] for device in gateway.get("/api/devices").json()["items"]]

    def some_device_fed() -> bool:
        # Any device: a small one may use next to nothing at this hour of the day.
        today = datetime.now(UTC).date().isoformat()
        return any(hourly_totals(gateway, device_id, [today]) for device_id in devices)

    wait_until("the live simulator's readings on a demo device", some_device_fed, timeout=180)
    passed("the stack's live simulator feeds the demo devices through balancer and monitors")
    docker("service", "update", "--detach=false", "--args", "sleep infinity", f"{stack}_simulator")
    say("paused the live simulator (its task now idles) for the exact-totals checks")


def create_device(gateway: Gateway, name: str, limit: str, owner_id: int) -> str:
    """Create a device for a client with the JSON API and return its id."""
    response = gateway.post("/api/devices", {"name": name, "max_hourly_kwh": limit, "owner_id": owner_id,
                                             "address": "Swarm test", "description": "swarm-test"})
    if response.status_code != 201:
        raise CheckFailed(f"POST /api/devices answered {response.status_code}: {response.text[:200]}")
    return response.json()["id"]


def wait_for_monitor_to_know(gateway: Gateway, device_id: str) -> None:
    """Wait until the monitor has the device (from the portal's outbox events)."""
    today = datetime.now(UTC).date().isoformat()
    wait_until("the monitor to learn the new device", lambda: gateway.get(
        f"/api/monitor/devices/{device_id}/hourly", date=today).status_code == 200, timeout=120)


def demo_client_id(gateway: Gateway) -> int:
    """Return the user id of a demo client, who will own the test devices."""
    response = gateway.get("/api/users", q="alice@ems.local")
    response.raise_for_status()
    return response.json()["items"][0]["id"]


def listen_for_alerts(url: str, token: str) -> tuple[socketio.Client, list[dict]]:
    """Connect to the notifier through the gateway (long-polling only) and collect `alert` events.

    Long-polling sends every request of a session separately: with two notifier
    tasks it only works when the gateway keeps the session's requests sticky.
    """
    received: list[dict] = []
    client = socketio.Client(reconnection=False)
    client.on("alert", received.append)
    client.connect(url, transports=["polling"], auth={"token": token}, socketio_path="socket.io",
                   wait_timeout=20)
    return client, received


def check_readings_reach_totals_and_alert(stack: str, gateway: Gateway, url: str) -> None:
    """Replay 3 hours for a new device: exact hourly totals, an alert stored and pushed live."""
    owner = demo_client_id(gateway)
    device_id = create_device(gateway, f"swarm-{uuid.uuid4().hex[:8]}", "1.0", owner)
    say(f"created device {device_id} (limit 1.0 kWh/h, owner user {owner}) through the gateway")
    wait_for_monitor_to_know(gateway, device_id)
    client, pushed = listen_for_alerts(url, gateway.token)
    say(f"Socket.IO session {client.sid} open through the gateway (long-polling, sticky)")
    try:
        # 18 readings: quiet, then 6 x 0.25 = 1.5 kWh within 60 minutes (over the limit), then quiet.
        values = [Decimal("0.05")] * 6 + [Decimal("0.25")] * 6 + [Decimal("0.1")] * 6
        process, started = start_replay(stack, device_id, values)
        candidates = finish_replay(process, values, started)
        expected = wait_until("exact hourly totals", lambda: exact_totals(gateway, device_id, candidates),
                              timeout=120)
        passed(f"simulator readings reached the hourly totals exactly: {sorted(expected.values())}")
        over = sorted(hour for hour, kwh in expected.items() if kwh > Decimal("1.0"))

        def alerts_stored():
            response = gateway.get("/api/monitor/alerts", device_id=device_id)
            response.raise_for_status()
            return response.json()["items"]
        stored = wait_until("an over-consumption alert", alerts_stored, timeout=60)
        if len(stored) != len(over):
            raise CheckFailed(f"expected {len(over)} alert(s) for hours {over}, got {stored}")
        passed(f"over-consumption alert stored: {stored[0]['kwh']} kWh > {stored[0]['limit_kwh']} kWh")
        live = wait_until("the alert on the admin's Socket.IO session", lambda: [
            alert for alert in pushed if alert.get("device_id") == device_id], timeout=60, interval=0.5)
        passed(f"alert pushed live through the gateway and notifier: {live[0].get('url')}")
    finally:
        client.disconnect()


def check_killed_monitor_is_replaced_and_totals_stay_exact(stack: str, gateway: Gateway) -> None:
    """Kill a monitor task during a large replay: Swarm replaces it, the totals stay exact."""
    device_id = create_device(gateway, f"swarm-kill-{uuid.uuid4().hex[:8]}", "1000", demo_client_id(gateway))
    wait_for_monitor_to_know(gateway, device_id)
    days = 10
    values = [Decimal(str(round(0.01 + (index % 37) * 0.003, 3))) for index in range(days * 24 * 6)]
    victim_slot = 2
    victim = running_container(stack, "monitor", victim_slot)
    tasks_before = task_ids(stack, "monitor", victim_slot)
    simulator, end = start_replay(stack, device_id, values)
    all_days = days_covered(expected_hourly(values, end))
    first_day = all_days[:1]
    # Kill once the replicas are consuming the replay, so that work is in flight.
    wait_until("the replay to start reaching the monitor", lambda: hourly_totals(
        gateway, device_id, first_day) or simulator.poll() is not None,
        timeout=60, interval=0.5)
    docker("kill", victim)
    say(f"killed monitor task container {victim[:12]} (slot {victim_slot}) during the replay")
    stored_at_kill = sum(hourly_totals(gateway, device_id, all_days).values())
    candidates = finish_replay(simulator, values, end)
    replacement = wait_until("Swarm to replace the killed monitor task",
                             lambda: task_ids(stack, "monitor", victim_slot) - tasks_before, timeout=120)
    passed(f"Swarm replaced it with task {sorted(replacement)[0][:12]} (slot {victim_slot})")

    expected = wait_until("every hourly total to be exact after the kill",
                          lambda: exact_totals(gateway, device_id, candidates), timeout=240)
    passed(f"{len(values)} readings over {len(expected)} hours: every hourly total exact "
        f"({sum(expected.values())} kWh, of which {stored_at_kill} kWh were stored at the kill), "
        "nothing lost or counted twice")


# --- Prometheus ---------------------------------------------------------------


def prometheus_api(prometheus: str, path: str, **params) -> dict | list:
    """Return the `data` of a Prometheus HTTP API answer."""
    response = requests.get(f"{prometheus}/api/v1/{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def scraped_services() -> dict[str, str]:
    """Return {Prometheus job: Swarm service} from the Swarm configuration's DNS names."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {job["job_name"]: name.removeprefix("tasks.") for job in config["scrape_configs"]
            for sd in job["dns_sd_configs"] for name in sd["names"]}


def every_task_scraped_up(stack: str, prometheus: str) -> dict[str, int]:
    """Return {job: targets up} once each job has one target per running task, all up."""
    replicas = service_replicas(stack)
    targets = prometheus_api(prometheus, "targets", state="active")["activeTargets"]
    up: dict[str, int] = defaultdict(int)
    problems = []
    for target in targets:
        job = target["labels"]["job"]
        if target["health"] == "up":
            up[job] += 1
        else:
            instance = target["labels"]["instance"]
            problems.append(f"{instance} ({job}) {target['health']}: {target['lastError']}")
    for job, service in scraped_services().items():
        desired = int(replicas[service].split()[0].split("/")[1])
        if up[job] != desired:
            problems.append(f"{job}: {up[job]} of {desired} tasks up")
    if problems:
        raise CheckFailed("; ".join(problems))
    return dict(up)


def check_prometheus_scrapes_every_task(stack: str, prometheus: str) -> None:
    """Wait until Prometheus scrapes every task of every EMS service, found through tasks.<service>."""
    up = wait_until("Prometheus to scrape every task up", lambda: every_task_scraped_up(stack, prometheus),
                    timeout=180, interval=3)
    passed(f"Prometheus scrapes all {sum(up.values())} tasks of {len(up)} services up (Swarm DNS discovery)")


def container_address(container: str) -> str:
    """Return a container's address on the back-end network, its only one (its scrape target's host)."""
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                  container).split()[0]


def worker_unhealthy_alerts(prometheus: str, instance: str) -> dict[str, str]:
    """Return {rule window: state} of the EmsWorkerUnhealthy alerts about one scrape instance."""
    alerts = prometheus_api(prometheus, "alerts")["alerts"]
    return {alert["labels"].get("window", "production"): alert["state"] for alert in alerts
            if alert["labels"]["alertname"] == "EmsWorkerUnhealthy"
            and alert["labels"].get("instance") == instance}


def check_frozen_monitor_fires_an_alert_and_is_replaced(stack: str, prometheus: str) -> None:
    """SIGSTOP a monitor task: Prometheus fires EmsWorkerUnhealthy, Swarm replaces the task."""
    victim_slot = 1
    victim = running_container(stack, "monitor", victim_slot)
    instance = f"{container_address(victim)}:9100"
    tasks_before = task_ids(stack, "monitor", victim_slot)
    docker("kill", "--signal", "STOP", victim)
    say(f"froze monitor task container {victim[:12]} (slot {victim_slot}, {instance}) with SIGSTOP")
    seen: dict[str, str] = {}

    def firing() -> bool:
        seen.update(worker_unhealthy_alerts(prometheus, instance))
        return seen.get("swarm-test") == "firing" and "production" in seen
    wait_until("EmsWorkerUnhealthy to fire for the frozen task", firing, timeout=120, interval=2)
    passed(f"Prometheus fires EmsWorkerUnhealthy for {instance} (the production rule: {seen['production']})")
    # Three failed health checks 15 s apart, then the 20 s stop grace period, then a new task.
    replacement = wait_until("Swarm to replace the frozen monitor task",
                             lambda: task_ids(stack, "monitor", victim_slot) - tasks_before, timeout=300)
    passed(f"Swarm's health check replaced the frozen task with {sorted(replacement)[0][:12]} "
           f"(slot {victim_slot})")
    wait_until("Prometheus to scrape the replacement", lambda: every_task_scraped_up(stack, prometheus),
               timeout=240, interval=3)
    passed("Prometheus scrapes the replacement: every task up again")


def main() -> int:
    """Run every check; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="ems")
    parser.add_argument("--url", default="http://127.0.0.1:8090")
    parser.add_argument("--prometheus", default="http://127.0.0.1:19090")
    arguments = parser.parse_args()
    started = time.monotonic()
    try:
        check_stack_up(arguments.stack, arguments.url)
        up = time.monotonic()
        say(f"stack healthy {up - started:.0f}s after deploy")
        gateway = seed_and_login(arguments.stack, arguments.url)
        check_live_simulator_then_pause_it(arguments.stack, gateway)
        check_readings_reach_totals_and_alert(arguments.stack, gateway, arguments.url)
        check_killed_monitor_is_replaced_and_totals_stay_exact(arguments.stack, gateway)
        check_prometheus_scrapes_every_task(arguments.stack, arguments.prometheus)
        check_frozen_monitor_fires_an_alert_and_is_replaced(arguments.stack, arguments.prometheus)
    except CheckFailed as failure:
        print(f"swarm check FAILED: {failure}", file=sys.stderr)
        print(f"swarm-checks: {len(PASSED)} passed, 1 failed")
        return 1
    say(f"all swarm checks passed in {time.monotonic() - started:.0f}s")
    print(f"swarm-checks: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
