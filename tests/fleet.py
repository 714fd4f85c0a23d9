"""A fleet on this machine: two faucet instances (real Plumber workers) writing to one
PostgreSQL table behind a real HAProxy, and a rolling restart of both under load.

Shared by tests/e2e/test_fleet.py (which asserts on the counts) and bench/fleet (which prints
them). HAProxy checks each instance's ``/__faucet__/ready``, keeps its connections to them
alive and reuses them, and retries nothing but failed connects (``retry-on
conn-failure``): a request that reached an instance is never sent again, so every failure
an instance causes reaches the client. Everything listens on 127.0.0.1; every process
started here (haproxy, faucet and its R workers) is stopped when the ``Fleet`` exits,
whatever happened.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import attrs

from faucet.lifecycle.deploy import free_port
from tests.helpers import PLUMBER, faucet_process, kill_session
from tests.pg import query

# HAProxy looks every CHECK_INTERVAL and takes an instance out after FALL failed checks;
# faucet serves on for SHUTDOWN_DELAY after SIGTERM, several times that, so HAProxy has
# stopped sending it requests well before its idle connections close.
CHECK_INTERVAL_MS = 250
FALL = 2
RISE = 2
SHUTDOWN_DELAY = 2.0
START_DEADLINE = 120.0  # seconds for an instance's R workers to come online (a busy box)

HAPROXY_CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 1000

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 30s
    # A request is sent again only when its connection could not be made: nothing that
    # may have reached R runs twice. Such a retry goes to the other instance.
    retries 3
    retry-on conn-failure
    option redispatch 1

frontend fleet
    bind 127.0.0.1:{port}
    default_backend faucets

backend faucets
    balance roundrobin
    # Keep-alive to the instances, idle connections shared between clients; HAProxy
    # closes half of those idle for a second each second, well before faucet's own
    # keep-alive timeout (5 s) would.
    http-reuse safe
    option httpchk
    http-check send meth GET uri /__faucet__/ready
    http-check expect status 200
    default-server check inter {inter}ms fall {fall} rise {rise} pool-purge-delay 1s
{servers}
"""


@attrs.define
class Instance:
    """One faucet of the fleet, always on the same port (HAProxy's config names it)."""

    name: str
    port: int
    folder: Path
    args: tuple[str, ...]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    started: list[subprocess.Popen] = attrs.Factory(list)  # every faucet process it ran
    starts: int = 0

    def start(self) -> None:
        """Start it; returns once faucet listens (its workers may still be starting)."""
        self.starts += 1
        log = self.folder / f"faucet-{self.name}-{self.starts}.log"
        self.proc = faucet_process(
            "start", "--host", f"127.0.0.1:{self.port}", "--log-file", str(log),
            "--pid-file", str(self.folder / f"faucet-{self.name}.pid"), *self.args,
            env=self.env)
        self.started.append(self.proc)
        deadline = time.monotonic() + START_DEADLINE
        while not self.listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"faucet {self.name} exited with {self.proc.returncode}:"
                                     f"\n{self.proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"faucet {self.name} did not listen within "
                                     f"{START_DEADLINE}s")
            time.sleep(0.05)

    def listening(self) -> bool:
        """Whether faucet answers on its port (ready or not yet)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/__faucet__/ready")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, and its exit status once it has exited (telemetry flushed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        """Kill every faucet it started and whatever of theirs is left (R workers)."""
        for proc in self.started:
            kill_session(proc)


class Load:
    """Closed-loop clients, each on one keep-alive connection through HAProxy, sending
    GET /echo?msg=<token>-<client>-<n> until ``stop`` (or ``limit`` requests in all).
    Each request's answer is kept: its status, or the exception that ended it (the client
    then opens a new connection)."""

    def __init__(self, port: int, token: str, clients: int, limit: int):
        self.port = port
        self.token = token
        self.limit = limit
        self.stopping = threading.Event()
        self.answered: list[str] = []  # the msg of each request that got 200
        self.failures: list[str] = []  # what went wrong with each other one
        self.sent = 0
        self._count = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=90)

    def _next(self) -> bool:
        with self._count:
            if self.stopping.is_set() or self.sent >= self.limit:
                return False
            self.sent += 1
            return True

    def _client(self, client: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        n = 0
        while self._next():
            n += 1
            msg = f"{self.token}-{client}-{n}"
            try:
                conn.request("GET", f"/echo?msg={msg}")
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{msg}: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            if response.status == 200:
                self.answered.append(msg)
            else:
                self.failures.append(f"{msg}: {response.status} {body[:200]!r}")
        conn.close()


@attrs.define
class Fleet:
    """HAProxy before instances ``a`` and ``b``; each records to ``dsn``'s table."""

    folder: Path
    dsn: str
    workers: int = 2
    port: int = attrs.field(factory=free_port)
    instances: list[Instance] = attrs.Factory(list)
    haproxy: subprocess.Popen | None = None
    log: list[str] = attrs.Factory(list)  # what happened, with times since the start
    began: float = attrs.field(factory=time.monotonic)
    load: Load | None = None  # its count goes into the log

    @property
    def socket(self) -> Path:
        return self.folder / "haproxy.sock"

    def note(self, text: str) -> None:
        sent = f" ({self.load.sent} requests sent)" if self.load is not None else ""
        self.log.append(f"{time.monotonic() - self.began:7.2f}s {text}{sent}")

    def start(self) -> None:
        args = ("--dir", str(PLUMBER), "--workers", str(self.workers),
                "--shutdown-delay", str(SHUTDOWN_DELAY), "--log-level", "warning")
        env = {"FAUCET_TELEMETRY_POSTGRES_STRING": self.dsn}
        self.instances = [Instance(name, free_port(), self.folder, args, env)
                          for name in ("a", "b")]
        servers = "\n".join(f"    server {i.name} 127.0.0.1:{i.port}" for i in self.instances)
        config = self.folder / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(
            socket=self.socket, port=self.port, inter=CHECK_INTERVAL_MS, fall=FALL,
            rise=RISE, servers=servers))
        self.haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
            stderr=(self.folder / "haproxy.log").open("w"), start_new_session=True)
        for instance in self.instances:
            instance.start()
        for instance in self.instances:
            self.wait_status(instance.name, "UP")
        self.note("both instances UP in HAProxy")

    def close(self) -> None:
        """Stop every process this fleet started, whatever state it is in."""
        for instance in self.instances:
            instance.kill()
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait()

    def server_status(self) -> dict[str, str]:
        """HAProxy's view of each instance (UP, DOWN, "UP 1/2"...), from its stats socket."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == "faucets"
                and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_status(self, name: str, status: str, timeout: float = START_DEADLINE) -> None:
        """Poll HAProxy until it reports ``status`` for instance ``name``."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):  # haproxy may still be starting
                if self.server_status().get(name) == status:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy did not see {name} {status} within {timeout}s")
            time.sleep(0.05)

    def rolling_restart(self) -> None:
        """Each instance in turn: SIGTERM, wait for it to exit (it must exit 0), start it
        again, and wait until HAProxy has it UP."""
        for instance in self.instances:
            instance.proc.send_signal(signal.SIGTERM)
            self.note(f"SIGTERM to {instance.name}")
            self.wait_status(instance.name, "DOWN", timeout=30)
            self.note(f"HAProxy sees {instance.name} DOWN")
            status = instance.proc.wait(timeout=60)
            assert status == 0, f"faucet {instance.name} exited with {status}"
            self.note(f"{instance.name} exited")
            instance.start()
            self.note(f"{instance.name} listening again")
            self.wait_status(instance.name, "UP")
            self.note(f"HAProxy sees {instance.name} UP")

    def stop_instances(self) -> None:
        """SIGTERM both (telemetry flushes on the way out) and wait for them to exit."""
        for instance in self.instances:
            instance.proc.send_signal(signal.SIGTERM)
        for instance in self.instances:
            assert instance.proc.wait(timeout=60) == 0


@attrs.frozen
class Outcome:
    """What a rolling restart under load came to."""

    sent: int
    during_restart: int  # requests sent from the first SIGTERM until both were UP again
    answered: int
    failures: list[str]
    rows: int  # rows in the table for this run's requests
    answered_once: int  # answered requests with exactly one row each
    log: list[str]


def rolling_restart_under_load(folder: Path, dsn: str, *, clients: int = 4,
                               limit: int = 20_000, workers: int = 2,
                               after: int = 200) -> Outcome:
    """A fleet serving ``clients`` closed-loop clients (at most ``limit`` requests) while
    both instances are restarted in turn; the load goes on until ``after`` more requests
    were answered once both are UP again. Then both instances stop and the table is
    counted."""
    token = f"fleet-{uuid.uuid4().hex[:12]}"
    fleet = Fleet(folder, dsn, workers=workers)
    try:
        fleet.start()
        fleet.load = load = Load(fleet.port, token, clients, limit)
        load.start()
        try:
            before = load.sent
            fleet.rolling_restart()
            during = load.sent - before
            settled = len(load.answered) + after
            while len(load.answered) < settled and load.sent < limit and not load.failures:
                time.sleep(0.05)
        finally:
            load.stop()
        fleet.note(f"load stopped: {load.sent} sent")
        fleet.stop_instances()
        fleet.note("both instances stopped")
    finally:
        fleet.close()
    counts = dict(query(dsn, "SELECT query_params, count(*) FROM faucet_http_events "
                             "WHERE query_params LIKE %s GROUP BY query_params",
                        (f"msg={token}-%",)))
    answered_once = sum(counts.get(f"msg={msg}") == 1 for msg in load.answered)
    return Outcome(load.sent, during, len(load.answered), list(load.failures),
                   sum(counts.values()), answered_once, fleet.log)
