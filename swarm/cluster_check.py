"""Check EMS on three Swarm nodes while nodes die (run by swarm/cluster-test.sh).

    python swarm/cluster_check.py --run-dir /run/ems-cluster --ca /run/ems-cluster/ca.crt

Everything goes through the managers' API (each node's Docker socket under
--run-dir, never the local `docker ps`) and through the gateways over HTTPS
(127.0.0.1:8091-8093, the test's CA):
1. every service runs; Galera has three Synced nodes, RabbitMQ three running
   nodes, readings.incoming three quorum members; every node's gateway serves
   HTTPS with the CA's certificate and redirects HTTP to HTTPS;
2. devices are created through the API; a device process outside the cluster
   (a container on the test's network, `stream` below) sends one reading per
   second for each, confirmed, to the brokers' ports on the nodes; sockets stay
   connected over wss and a client chats;
3. the node holding the Galera writer, then the one holding the RabbitMQ leader
   of readings.incoming, then the Swarm leader are killed (`docker kill`) in turn:
   seconds until ingestion resumes, node restarted, seconds until it rejoins;
4. totals: readings confirmed/stored/lost/double-counted, alerts raised against
   delivered, chat messages sent against stored in order, readings/s before and
   during the kills. The last line is `cluster: lost=N double=N kills=N
   worst_resume_s=N`; any loss, double count or reordering exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

READING_KWH = "0.001"  # every reading the same (swarm/cluster/stream.py): an hourly total counts them
STREAM_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster", "stream.py")
STREAM_CONTAINER = "devices"
DEMO_ADMIN = {"email": "admin@ems.local", "password": "admin-demo-2024"}
DEMO_CLIENT = {"email": "alice@ems.local", "password": "alice-demo-2024"}
ALERTING_LIMIT_KWH = "0.12"  # passed after 120 readings (two minutes) in an hour
QUIET_LIMIT_KWH = "1000"
IGNORED_SERVICES = {"prometheus"}  # not part of the cluster test (no image is built for it)

# The single-node check's helpers (this file's directory is on the path, also in the device container).
from check import CheckFailed, say, wait_until  # noqa: E402


def run(argv: list[str], timeout: float = 60, stdin: str | None = None) -> str:
    """Run a command and return its output; raise CalledProcessError on failure or timeout."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin)
    except subprocess.TimeoutExpired as error:
        raise subprocess.CalledProcessError(-1, argv, "", f"timed out after {timeout}s") from error
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
    return result.stdout


# --- the nodes --------------------------------------------------------------


@dataclass
class Cluster:
    """Three Docker-in-Docker nodes seen through their own Docker sockets."""

    run_dir: str
    prefix: str
    stack: str
    nodes: tuple[int, ...] = (1, 2, 3)

    def docker(self, node: int, *arguments: str, timeout: float = 60) -> str:
        """Run the docker CLI against node `node`'s dockerd."""
        return run(["docker", "-H", f"unix://{self.run_dir}/node{node}/docker.sock", *arguments],
                   timeout=timeout)

    def container_name(self, node: int) -> str:
        return f"{self.prefix}-node{node}"

    def running(self, node: int) -> bool:
        """Tell whether the node's container runs (the host's view: it is the machine)."""
        try:
            state = run(["docker", "inspect", "-f", "{{.State.Running}}", self.container_name(node)])
        except subprocess.CalledProcessError:
            return False
        return state.strip() == "true"

    def alive(self) -> list[int]:
        return [node for node in self.nodes if self.running(node)]

    def manager(self) -> int:
        """Return a node whose manager answers for the swarm (it has the Raft quorum)."""
        for node in self.alive():
            try:
                self.docker(node, "node", "ls", "-q", timeout=10)
                return node
            except subprocess.SubprocessError:
                continue
        raise CheckFailed("no manager answers")

    def task_container(self, service: str) -> tuple[int, str]:
        """Return (node, container id) of a running task of a stack service."""
        name = f"{self.stack}_{service}"
        for node in self.alive():
            try:
                ids = self.docker(node, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}",
                                  timeout=10).split()
            except subprocess.SubprocessError:
                continue
            if ids:
                return node, ids[0]
        raise CheckFailed(f"no running task of {name}")

    def exec(self, service: str, *command: str, timeout: float = 60) -> str:
        """Run a command in a running task of a service, wherever it runs."""
        node, container = self.task_container(service)
        return self.docker(node, "exec", container, *command, timeout=timeout)

    def kill(self, node: int) -> None:
        run(["docker", "kill", self.container_name(node)])

    def start(self, node: int) -> None:
        run(["docker", "start", self.container_name(node)])

    # --- what runs ---------------------------------------------------------

    def services_pending(self) -> list[str]:
        """Return the services not yet at their desired tasks (a job: not completed)."""
        lines = self.docker(self.manager(), "stack", "services", self.stack,
                            "--format", "{{.Name}} {{.Replicas}}").splitlines()
        pending = []
        for line in lines:
            name, replicas = line.split(" ", 1)
            service = name.removeprefix(f"{self.stack}_")
            if service in IGNORED_SERVICES:
                continue
            counts = replicas.split("(")[1].split()[0] if "completed" in replicas else replicas.split()[0]
            done, desired = counts.split("/")
            if done != desired:
                pending.append(f"{service} {replicas}")
        return pending

    def swarm_leader(self) -> int:
        nodes = self.docker(self.manager(), "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}")
        for line in nodes.splitlines():
            hostname, *status = line.split()
            if status == ["Leader"]:
                return int(hostname.removeprefix("node"))
        raise CheckFailed("no swarm leader")

    def nodes_ready(self) -> int:
        lines = self.docker(self.manager(), "node", "ls",
                            "--format", "{{.Status}} {{.ManagerStatus}}").splitlines()
        return sum(1 for line in lines if line.split()[0] == "Ready" and len(line.split()) > 1)

    # --- Galera -------------------------------------------------------------

    def galera_status(self, member: int) -> dict[str, str]:
        """Return the wsrep status of Galera node db<member> (empty when it does not answer)."""
        query = ("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', "
                 "'wsrep_cluster_size', 'wsrep_cluster_status')")
        try:
            output = self.exec(f"db{member}", "mariadb", "-uroot", "-N", "-B", "-e", query, timeout=15)
        except (subprocess.SubprocessError, CheckFailed):
            return {}
        return dict(line.split("\t", 1) for line in output.splitlines() if "\t" in line)

    def galera_synced(self) -> bool:
        states = {member: self.galera_status(member) for member in self.nodes}
        return all(state.get("wsrep_local_state_comment") == "Synced"
                   and state.get("wsrep_cluster_size") == "3" for state in states.values())

    def galera_writer(self) -> int:
        """Return the node whose Galera member holds EMS's connections (HAProxy's writer)."""
        counts = {}
        for member in self.nodes:
            try:
                counts[member] = int(self.exec(f"db{member}", "mariadb", "-uroot", "-N", "-B", "-e",
                                               "SELECT COUNT(*) FROM information_schema.processlist "
                                               "WHERE user = 'ems'", timeout=15).strip())
            except (subprocess.SubprocessError, CheckFailed, ValueError):
                counts[member] = -1
        return max(counts, key=counts.get)

    def sql(self, query: str) -> list[list[str]]:
        """Run a query on a Synced Galera node and return its rows."""
        for member in self.nodes:
            if self.galera_status(member).get("wsrep_local_state_comment") != "Synced":
                continue
            output = self.exec(f"db{member}", "mariadb", "-uroot", "-N", "-B", "-e", query, timeout=120)
            return [line.split("\t") for line in output.splitlines()]
        raise CheckFailed("no Synced Galera node answers")

    # --- RabbitMQ -----------------------------------------------------------

    def rabbit_running_nodes(self) -> int:
        for member in self.nodes:
            try:
                status = json.loads(self.exec(f"rabbitmq{member}", "rabbitmqctl", "-q", "cluster_status",
                                              "--formatter", "json", timeout=30))
            except (subprocess.SubprocessError, CheckFailed, ValueError):
                continue
            return len(status.get("running_nodes", []))
        return 0

    def queue_members(self, queue: str) -> tuple[int, int]:
        """Return (leader's node, member count) of a quorum queue."""
        for member in self.nodes:
            try:
                rows = json.loads(self.exec(f"rabbitmq{member}", "rabbitmqctl", "-q", "list_queues", "name",
                                            "leader", "members", "--formatter", "json", timeout=30))
            except (subprocess.SubprocessError, CheckFailed, ValueError):
                continue
            for row in rows:
                if row["name"] == queue:
                    leader = row.get("leader") or ""
                    return int(leader.removeprefix("rabbit@rabbitmq") or 0), len(row.get("members") or [])
        raise CheckFailed(f"no broker lists {queue}")


# --- HTTPS through the gateways ---------------------------------------------


def https_session(ca: str):
    """A requests session that trusts only the test's CA."""
    import requests

    session = requests.Session()
    session.verify = ca
    # Neither a proxy nor REQUESTS_CA_BUNDLE from the environment (it would replace the CA).
    session.trust_env = False
    return session


def gateway_url(node: int) -> str:
    return f"https://127.0.0.1:809{node}"


def check_gateways(cluster: Cluster, ca: str) -> None:
    """Every node's gateway serves HTTPS with the CA's certificate; HTTP redirects to HTTPS."""
    import requests

    session = https_session(ca)
    for node in cluster.nodes:
        wait_until(f"node {node}'s gateway over HTTPS", lambda n=node: session.get(
            f"{gateway_url(n)}/login", timeout=10).status_code == 200, timeout=300, interval=3)
        plain = requests.get(f"http://127.0.0.1:808{node}/login", timeout=10, allow_redirects=False)
        location = plain.headers.get("Location", "")
        if plain.status_code not in (301, 308) or not location.startswith("https://"):
            raise CheckFailed(f"http on node {node} answered {plain.status_code} {location!r}, "
                              "not a redirect to https")
    say("every node's gateway serves HTTPS (certificate of the test's CA) and redirects HTTP to HTTPS")


class Api:
    """A user's JSON API session through one node's gateway."""

    def __init__(self, ca: str, node: int, account: dict):
        self.ca, self.node, self.account = ca, node, account
        self.http = https_session(ca)
        self.token = ""
        self.login()

    def login(self) -> None:
        response = self.http.post(f"{gateway_url(self.node)}/api/auth/login", json=self.account, timeout=15)
        if response.status_code != 200:
            raise CheckFailed(f"login as {self.account['email']} answered {response.status_code}: "
                              f"{response.text[:200]}")
        self.token = response.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def call(self, method: str, path: str, **arguments):
        """Call the API through any live gateway, starting with this session's own."""
        import requests

        last = None
        for node in [self.node, *(n for n in (1, 2, 3) if n != self.node)]:
            try:
                response = self.http.request(method, f"{gateway_url(node)}{path}", timeout=15, **arguments)
            except requests.RequestException as error:
                last = error
                continue
            if response.status_code < 500:
                return response
            last = CheckFailed(f"{method} {path}: {response.status_code}")
        raise CheckFailed(f"{method} {path} failed through every gateway: {last}")


# --- sockets and chat ----------------------------------------------------------


@dataclass
class SocketCrowd:
    """Sockets held open over wss through the three gateways, collecting alerts."""

    ca: str
    token: str
    count: int
    clients: list = field(default_factory=list)
    received: dict[int, list[int]] = field(default_factory=dict)  # socket index -> alert ids
    reconnects: int = 0

    def open(self) -> None:
        import socketio

        for index in range(self.count):
            client = socketio.Client(http_session=https_session(self.ca), reconnection=True,
                                     reconnection_delay=1, reconnection_delay_max=5)
            self.received[index] = []
            client.on("alert", lambda alert, i=index: self.received[i].append(int(alert.get("alert_id", 0))))
            client.on("connect", lambda: None)
            self.clients.append(client)
            self._connect(client, 1 + index % 3)

    def _connect(self, client, node: int) -> None:
        for attempt in range(3):
            try:
                client.connect(gateway_url(1 + (node - 1 + attempt) % 3), transports=["websocket"],
                               auth={"token": self.token}, socketio_path="socket.io", wait_timeout=20)
                return
            except Exception:  # noqa: BLE001 (socketio raises its own and the transport's errors)
                time.sleep(1)
        raise CheckFailed("a socket could not connect through any gateway")

    def connected(self) -> int:
        return sum(1 for client in self.clients if client.connected)

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.disconnect()


class Chatter(threading.Thread):
    """A client chatting to support through a socket: each message resent until acked."""

    def __init__(self, ca: str, token: str):
        super().__init__(daemon=True)
        self.ca, self.token = ca, token
        self.sent: list[str] = []
        self.stopping = threading.Event()
        self.run_id = uuid.uuid4().hex[:8]
        self.failures: list[str] = []

    def run(self) -> None:
        import socketio

        client = socketio.Client(http_session=https_session(self.ca), reconnection=False)
        number, node = 0, 1
        while not self.stopping.is_set():
            message_id = f"cluster-{self.run_id}-{number:05d}"
            try:
                if not client.connected:
                    client = socketio.Client(http_session=https_session(self.ca), reconnection=False)
                    client.connect(gateway_url(node), transports=["websocket"], auth={"token": self.token},
                                   socketio_path="socket.io", wait_timeout=10)
                ack = client.call("chat:send", {"body": f"message {number}", "client_message_id": message_id},
                                  timeout=10)
                if isinstance(ack, dict) and ack.get("ok"):
                    self.sent.append(message_id)
                    number += 1
                    self.stopping.wait(2)
                    continue
            except Exception as error:  # noqa: BLE001 (any failure: the same message again, elsewhere)
                self.failures.append(type(error).__name__)
            with contextlib.suppress(Exception):
                client.disconnect()
            node = 1 + node % 3
            self.stopping.wait(1)
        client.disconnect()


# --- the device stream ----------------------------------------------------------


def start_stream(cluster: Cluster, image: str, devices: list[str], password_file: str) -> None:
    """Start the device container on the test's network (outside the swarm, like real meters)."""
    name = f"{cluster.prefix}-{STREAM_CONTAINER}"
    run(["docker", "rm", "-f", name])
    with open(f"{cluster.run_dir}/devices.txt", "w") as file:
        file.write("\n".join(devices) + "\n")
    # As root: it writes its record into the test's own directory.
    run(["docker", "run", "-d", "--name", name, "--user", "0:0", "--network", f"{cluster.prefix}-net",
         "-v", f"{cluster.run_dir}:/stream", "-v", f"{STREAM_SCRIPT}:/check/stream.py:ro",
         "-e", f"EMS_AMQP_URL=amqp://{cluster.prefix}-broker:5672/%2F",
         "-e", f"EMS_AMQP_PASSWORD_SIMULATOR_FILE=/stream/{password_file}",
         # Settings insist on a JWT secret; the meters sign nothing.
         "-e", f"EMS_JWT_SECRET={uuid.uuid4().hex}{uuid.uuid4().hex}", "-e", "EMS_QUEUE_TYPE=quorum",
         "-e", "EMS_AMQP_HEARTBEAT_SECONDS=10", "-e", "PYTHONPATH=/app",
         image, "python", "/check/stream.py", "--devices", "/stream/devices.txt",
         "--out", "/stream/confirmed.txt"])


def stop_stream(cluster: Cluster) -> dict:
    name = f"{cluster.prefix}-{STREAM_CONTAINER}"
    run(["docker", "stop", "-t", "90", name], timeout=120)
    logs = run(["docker", "logs", name]).strip().splitlines()
    run(["docker", "rm", "-f", name])
    for line in reversed(logs):
        if line.startswith("{"):
            return json.loads(line)
    raise CheckFailed(f"the device stream printed no summary: {logs[-5:]}")


@dataclass
class StreamStore:
    """What the monitor stored for the stream's devices (read on a Synced Galera node)."""

    cluster: Cluster
    devices: list[str]
    since_ms: int

    def _where(self, column: str = "device_id") -> str:
        # Only UUIDs the API returned go into the query text.
        listed = ",".join(f"'{uuid.UUID(device)}'" for device in self.devices)
        return f"{column} IN ({listed})"

    def known_devices(self) -> int:
        query = f"SELECT COUNT(*) FROM ems_monitor.devices WHERE {self._where('id')}"  # noqa: S608
        return int(self.cluster.sql(query)[0][0])

    def count(self) -> int:
        return int(self.cluster.sql(f"SELECT COUNT(*) FROM ems_monitor.readings "  # noqa: S608
                                    f"WHERE timestamp_ms >= {self.since_ms} AND {self._where()}")[0][0])

    def keys(self) -> set[tuple[str, str]]:
        rows = self.cluster.sql(f"SELECT device_id, timestamp_ms FROM ems_monitor.readings "  # noqa: S608
                                f"WHERE timestamp_ms >= {self.since_ms} AND {self._where()}")
        return {(device, stamp) for device, stamp in rows}

    def counted(self) -> int:
        """Return how many readings the hourly totals add up (each reading is READING_KWH)."""
        total = self.cluster.sql(f"SELECT COALESCE(ROUND(SUM(kwh) / {READING_KWH}), 0) "  # noqa: S608
                                 f"FROM ems_monitor.hourly_consumption WHERE {self._where()}")[0][0]
        return int(float(total))

    def alerts(self) -> set[int]:
        rows = self.cluster.sql(f"SELECT id FROM ems_monitor.alerts WHERE {self._where()}")  # noqa: S608
        return {int(row[0]) for row in rows}


# --- the run -------------------------------------------------------------------


@dataclass
class Kill:
    reason: str
    node: int
    resume_s: float = 0.0
    rejoin_s: float = 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="ems")
    parser.add_argument("--run-dir", default="/run/ems-cluster")
    parser.add_argument("--prefix", default="ems-cluster")
    parser.add_argument("--ca", default="/run/ems-cluster/ca.crt")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--baseline-seconds", type=float, default=30)
    arguments = parser.parse_args()
    cluster = Cluster(arguments.run_dir, arguments.prefix, arguments.stack)
    try:
        return check(cluster, arguments)
    except CheckFailed as failure:
        print(f"cluster check FAILED: {failure}", file=sys.stderr)
        print(f"cluster: lost=? double=? kills=0 worst_resume_s=? failed={json.dumps(str(failure))}")
        return 1


def check_cluster_formed(cluster: Cluster) -> None:
    """Every service runs; Galera and RabbitMQ have three members; readings.incoming three replicas."""
    started = time.monotonic()
    wait_until("every service to run its tasks", lambda: not cluster.services_pending() or None,
               timeout=900, interval=5)
    say(f"every service runs its tasks ({time.monotonic() - started:.0f}s after deploy)")
    wait_until("three Synced Galera nodes", cluster.galera_synced, timeout=300, interval=3)
    wait_until("three running RabbitMQ nodes", lambda: cluster.rabbit_running_nodes() == 3,
               timeout=300, interval=3)
    leader, members = wait_until("readings.incoming", lambda: cluster.queue_members("readings.incoming"),
                                 timeout=120)
    if members != 3:
        # Declared before every broker had joined: spread it over all three, as an operator would.
        for member in cluster.nodes:
            cluster.exec(f"rabbitmq{member}", "rabbitmq-queues", "grow", f"rabbit@rabbitmq{member}", "all")
        leader, members = cluster.queue_members("readings.incoming")
    if members != 3:
        raise CheckFailed(f"readings.incoming has {members} members, not 3")
    say(f"Galera: 3 Synced; RabbitMQ: 3 running; readings.incoming: 3 quorum members, "
        f"leader on node {leader}")


def create_devices(cluster: Cluster, admin: Api, owner: int, count: int) -> list[str]:
    """Create `count` devices of `owner` through the gateways; one in twenty alerts within minutes."""
    devices = []
    for index in range(count):
        limit = ALERTING_LIMIT_KWH if index % 20 == 0 else QUIET_LIMIT_KWH
        response = admin.call("POST", "/api/devices", json={
            "name": f"cluster-{index:03d}", "max_hourly_kwh": limit, "owner_id": owner,
            "address": "Cluster test", "description": "swarm-cluster-test"})
        if response.status_code != 201:
            raise CheckFailed(f"POST /api/devices answered {response.status_code}: {response.text[:200]}")
        devices.append(response.json()["id"])
    return devices


def kill_in_turn(cluster: Cluster, store: StreamStore, kills: int, before_rate: float) -> list[Kill]:
    """Kill the node of each role in turn; time the resumed ingestion and the rejoin."""
    plan = [("the Galera writer", cluster.galera_writer),
            ("the RabbitMQ leader of readings.incoming",
             lambda: cluster.queue_members("readings.incoming")[0]),
            ("the Swarm leader", cluster.swarm_leader)][:kills]
    done = []
    for reason, find in plan:
        kill = Kill(reason, find())
        done.append(kill)
        at_kill = store.count()
        killed_at = time.monotonic()
        cluster.kill(kill.node)
        say(f"killed node {kill.node}, holding {reason}")
        kill.resume_s = wait_for_resumed_ingestion(store, at_kill, killed_at, before_rate)
        say(f"ingestion resumed {kill.resume_s:.0f}s after the kill")
        cluster.start(kill.node)
        restarted_at = time.monotonic()
        wait_until(f"node {kill.node} to rejoin (swarm Ready, Galera Synced x3, RabbitMQ 3 running)",
                   lambda: cluster.nodes_ready() == 3 and cluster.galera_synced()
                   and cluster.rabbit_running_nodes() == 3, timeout=600, interval=3)
        kill.rejoin_s = time.monotonic() - restarted_at
        say(f"node {kill.node} rejoined {kill.rejoin_s:.0f}s after its restart")
    return done


def wait_for_resumed_ingestion(store: StreamStore, at_kill: int, killed_at: float,
                               before_rate: float) -> float:
    """Return seconds from the kill until readings are stored at half the rate before the kills again."""
    previous, previous_at = at_kill, time.monotonic()
    deadline = killed_at + 300
    while time.monotonic() < deadline:
        time.sleep(2)
        try:
            count = store.count()
        except (CheckFailed, subprocess.SubprocessError):
            continue
        now = time.monotonic()
        if now - killed_at > 4 and (count - previous) / (now - previous_at) >= before_rate / 2:
            return now - killed_at
        previous, previous_at = count, now
    raise CheckFailed("ingestion did not resume within 300 s of the kill")


def stored_rate(store: StreamStore, seconds: float) -> float:
    """Return readings stored per second over the next `seconds`."""
    count, started = store.count(), time.monotonic()
    time.sleep(seconds)
    return (store.count() - count) / (time.monotonic() - started)


def check(cluster: Cluster, arguments) -> int:
    check_cluster_formed(cluster)
    check_gateways(cluster, arguments.ca)
    cluster.exec("web", "python", "-m", "web", "seed", timeout=180)
    # The stack's live simulator feeds every device: the stream's devices get only the stream's readings.
    cluster.docker(cluster.manager(), "service", "scale", "--detach", f"{cluster.stack}_simulator=0")
    admin = Api(arguments.ca, 1, DEMO_ADMIN)
    client = Api(arguments.ca, 2, DEMO_CLIENT)
    owner = admin.call("GET", "/api/users", params={"q": DEMO_CLIENT["email"]}).json()["items"][0]["id"]
    store = StreamStore(cluster, create_devices(cluster, admin, owner, arguments.devices),
                        since_ms=int(time.time() * 1000))
    wait_until("the monitor to know every device", lambda: store.known_devices() == len(store.devices),
               timeout=180, interval=3)
    say(f"{len(store.devices)} devices created through the gateways; the monitor knows them all")

    crowd = SocketCrowd(arguments.ca, client.token, arguments.sockets)
    crowd.open()
    chatter = Chatter(arguments.ca, client.token)
    chatter.start()
    say(f"{crowd.connected()} sockets connected over wss through the three gateways; a client chats")
    start_stream(cluster, f"{cluster.prefix}/ems:latest", store.devices, "simulator-password")
    say(f"the device stream sends {len(store.devices)} readings/s from outside the swarm")
    # The pipeline's first readings take a while on a busy machine: measure once they flow.
    wait_until("the stream's first stored readings", lambda: store.count() > 0, timeout=300, interval=3)
    time.sleep(10)
    before_rate = stored_rate(store, arguments.baseline_seconds)
    if before_rate <= 0:
        raise CheckFailed("no readings stored while the stream ran, before any kill")
    say(f"stored {before_rate:.0f} readings/s before any kill")

    during_count, during_start = store.count(), time.monotonic()
    kills = kill_in_turn(cluster, store, arguments.kills, before_rate)
    during_rate = (store.count() - during_count) / (time.monotonic() - during_start)

    summary = stop_stream(cluster)
    chatter.stopping.set()
    chatter.join(timeout=30)
    with open(f"{cluster.run_dir}/confirmed.txt") as file:
        confirmed = {tuple(line.split()) for line in file.read().splitlines()}
    try:
        stored = wait_until("every confirmed reading to be stored",
                            lambda: (keys := store.keys()) >= confirmed and keys, timeout=240, interval=5)
    except CheckFailed as failure:
        say(str(failure))
        stored = store.keys()
    lost = len(confirmed - stored)
    counted = store.counted()
    double = counted - len(stored)
    say(f"readings: {summary['sent']} made, {summary['confirmed']} confirmed, {len(stored)} stored, "
        f"lost={lost}, double-counted={double} (the hourly totals count {counted})")

    alerts = store.alerts()
    delivered = set().union(*(set(ids) for ids in crowd.received.values())) & alerts
    twice = sum(len(ids) - len(set(ids)) for ids in crowd.received.values())
    say(f"alerts: {len(alerts)} raised, {len(delivered)} delivered to sockets, {twice} shown twice on one; "
        f"{crowd.connected()}/{arguments.sockets} sockets connected at the end")
    crowd.close()

    chat_stored = [row[0] for row in cluster.sql(
        "SELECT client_message_id FROM ems_support.messages "  # noqa: S608 (a hex run id)
        f"WHERE client_message_id LIKE 'cluster-{chatter.run_id}-%' ORDER BY id")]
    chat_in_order = chat_stored[:len(chatter.sent)] == chatter.sent
    say(f"chat: {len(chatter.sent)} sent (acknowledged), {len(chat_stored)} stored, "
        f"in order: {chat_in_order}")
    say(f"readings/s stored: {before_rate:.0f} before the kills, {during_rate:.0f} during them")
    for kill in kills:
        say(f"kill of node {kill.node} ({kill.reason}): ingestion resumed in {kill.resume_s:.0f}s, "
            f"rejoined in {kill.rejoin_s:.0f}s")
    worst = max((kill.resume_s for kill in kills), default=0)
    failed = lost or double or twice or not chat_in_order or len(delivered) < len(alerts)
    print(f"cluster: lost={lost} double={double} kills={len(kills)} worst_resume_s={worst:.0f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
