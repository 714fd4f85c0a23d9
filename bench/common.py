"""Shared pieces of the benchmarks: R workers, nginx, faucet, wrk and /proc readings.

Everything binds to 127.0.0.1 on free ports and every process started here is stopped
when the ``Stack`` context exits.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from faucet.lifecycle.deploy import free_port
from faucet.telemetry.table_init import init_table

ROOT = Path(__file__).resolve().parent.parent
PLUMBER = ROOT / "examples" / "plumber"
TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@contextlib.contextmanager
def throwaway_schema(server_dsn: str, prefix: str) -> Iterator[str]:
    """A connection string whose search_path is a new schema with faucet_http_events."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = make_conninfo(server_dsn, options=f"-csearch_path={schema}")
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        init_table(dsn, None, None, timescale=False)
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")



def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` (not their children)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    now = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return now / 1024, peak / 1024


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


class Stack(contextlib.ExitStack):
    """Starts processes and stops each (with its process group) on exit."""

    def popen(self, argv, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.callback(_stop, proc)
        return proc

    def plumber_worker(self, worker_id: int, folder: Path = PLUMBER) -> int:
        port = free_port()
        code = f'options("plumber.port"={port}); plumber::pr_run(plumber::plumb())'
        self.popen(["Rscript", "-e", code], cwd=folder, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL,
                   env={**os.environ, "FAUCET_WORKER_ID": str(worker_id)})
        wait_port(port)
        return port

    def nginx(self, upstream_ports: list[int], directive: str = "") -> tuple[int, list[int]]:
        """nginx with one worker process before ``upstream_ports``, no upstream keep-alive
        (its fastest setting here: httpuv's keep-alive stall). Returns (port, pids)."""
        if shutil.which("nginx") is None:
            sys.exit("bench: nginx is not installed (apt-get install -y nginx-light)")
        port = free_port()
        folder = Path(tempfile.mkdtemp(prefix="faucet-bench-nginx-"))
        servers = "".join(f"server 127.0.0.1:{p};" for p in upstream_ports)
        (folder / "nginx.conf").write_text(
            f"daemon off; worker_processes 1; pid {folder}/nginx.pid;"
            f"error_log {folder}/error.log; events {{ worker_connections 1024; }}"
            f"http {{ access_log off; upstream r {{ {directive} {servers} }}"
            f"client_body_temp_path {folder}; proxy_temp_path {folder};"
            f"server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://r; }} }} }}")
        proc = self.popen(["nginx", "-c", str(folder / "nginx.conf"), "-p", str(folder)],
                          stderr=subprocess.DEVNULL)
        wait_port(port)
        return port, [proc.pid, *children(proc.pid)]

    def faucet(self, *args: str, env: dict | None = None) -> tuple[int, int]:
        """``faucet start`` on the Plumber example; (port, faucet's pid) once it serves."""
        port = free_port()
        proc = self.popen(
            [sys.executable, "-m", "faucet", "start", "--dir", str(PLUMBER),
             "--host", f"127.0.0.1:{port}", "--log-level", "warning", *args],
            env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"faucet exited with status {proc.returncode} before serving")
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5) as sock:
                    sock.sendall(b"GET /__faucet__/health HTTP/1.0\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return port, proc.pid
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("faucet did not become healthy within 60s")


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wrk(url: str, seconds: int = 10, threads: int = 2, connections: int = 16) -> dict:
    """Run wrk once; req/s, p50 and p99 in ms, and the error count."""
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (apt-get install -y wrk)")
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                          "--latency", url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),
        "p99": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),
        "errors": (int(errors.group(1)) if errors else 0),
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
