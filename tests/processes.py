"""Start and stop real EMS processes from tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """Return a TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def wait_for(condition, timeout: float, message: str, interval: float = 0.1):
    """Return the first truthy value of `condition()`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(interval)


def python_module(*arguments: str) -> list[str]:
    """Return the command that runs `python -m …` with this interpreter."""
    return [sys.executable, "-m", *arguments]


def procfile_commands() -> dict[str, str]:
    """Return the Procfile's processes by name (the one list of what EMS runs)."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


class ServiceProcess:
    """A real EMS process run from the repository root, in its own process group."""

    def __init__(self, command: list[str], env: dict | None = None, name: str | None = None):
        self.arguments = command
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, **(env or {})}
        self.env["PATH"] = bin_dir + os.pathsep + self.env.get("PATH", "")
        self.name = name or " ".join(command[-3:])
        # One folder per test run: runs side by side never mix their logs.
        self.log_path = ROOT / ".pytest_cache" / "processes" / str(os.getpid()) / (
            self.name.replace(" ", "_").replace("/", "_") + ".log")
        self.log_offset = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        """Start the process, its output going to a log file under .pytest_cache."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.log_offset = log.tell()
        self.process = subprocess.Popen(self.arguments, cwd=ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def kill_holding(self, unsettled: Callable[[], int], attempts: int = 10) -> int:
        """Kill the process (SIGKILL) at a moment it holds unsettled work; return how much it held.

        The process is frozen (SIGSTOP) while `unsettled()` counts what it holds, so the
        count is what the kill finds; a moment it holds nothing is let go and tried again.
        """
        for _ in range(attempts):
            os.killpg(self.process.pid, signal.SIGSTOP)
            held = unsettled()
            if held:
                self.kill()
                return held
            os.killpg(self.process.pid, signal.SIGCONT)
            time.sleep(0.2)
        raise AssertionError(f"{self.name} held no unsettled work at any of {attempts} moments")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process politely, then by force."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """Return what the process printed since it was last started."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def broker_queues(amqp_url: str) -> dict[str, tuple[int, int]]:
    """Return {queue: (ready, unacknowledged)} of the URL's virtual host, as the broker counts them now.

    Asked through rabbitmqctl, which reads the queues themselves: the management API
    shows samples up to 5 s old (RabbitMQ's collect_statistics_interval).
    """
    vhost = unquote(urlparse(amqp_url).path[1:]) or "/"
    output = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers",
                             "name", "messages_ready", "messages_unacknowledged"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    counts = {}
    for line in output.splitlines():
        name, ready, unacknowledged = line.split("\t")
        counts[name] = (int(ready), int(unacknowledged))
    return counts


def unacknowledged(amqp_url: str, queue: str) -> int:
    """Return how many deliveries of `queue` its consumers hold unacknowledged right now."""
    return broker_queues(amqp_url)[queue][1]


class Stack:
    """Several Procfile processes started together on this test run's ports."""

    def __init__(self, names: list[str], env: dict):
        commands = procfile_commands()
        self.processes = {
            name: ServiceProcess(["bash", "-c", "exec " + commands[name]], env=env, name=name)
            for name in names
        }

    def start(self, ports: list[int], timeout: float = 60.0) -> Stack:
        """Start every process and wait until each of `ports` accepts connections."""
        for process in self.processes.values():
            process.start()
        for port in ports:
            try:
                wait_for_port(port, timeout)
            except TimeoutError as error:
                raise TimeoutError(f"{error}\n" + self.logs()) from error
        return self

    def logs(self) -> str:
        """Return the tail of every process's output (for failing tests)."""
        return "\n".join(f"--- {name}\n{p.log()[-3000:]}" for name, p in self.processes.items())

    def stop(self) -> None:
        """Stop every process."""
        for process in self.processes.values():
            process.stop()


class TcpProxy:
    """A TCP forwarder a test can cut and restore, to stand for an outage of what is behind it.

    The listening port stays bound for the proxy's whole life (nobody else can
    take it meanwhile). While cut, every open connection is dropped and new ones
    are hung up on at once, as clients see a peer that has vanished. A proxy is
    created cut: `start()` (or `restore()`) opens it. `delay` seconds are added
    before each chunk is forwarded, either way, to stand for a slow peer.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", delay: float = 0.0):
        import threading

        self.target = (target_host, target_port)
        self.delay = delay
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._open = False
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=32)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def start(self) -> TcpProxy:
        """Forward new connections to the target."""
        self._open = True
        return self

    restore = start

    def cut(self) -> None:
        """Drop every open connection and hang up on new ones."""
        self._open = False
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    stop = cut

    def close(self) -> None:
        """Cut, then release the port for good."""
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by close()
            if not self._open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
