"""Running faucet inside a test: in-process (for state and speed) or as a subprocess
(for signals and exit codes)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import attrs
import httpx
import trio

from faucet.app import Shutdown, plan_router, plan_start, serve
from faucet.config import Config, TelemetryConfig

ROOT = Path(__file__).resolve().parent.parent
PLUMBER = ROOT / "examples" / "plumber"
SHINY = ROOT / "examples" / "shiny"


@attrs.define
class Running:
    """A faucet served from a test's nursery."""

    url: str
    shutdown: Shutdown
    proxy_mounts: list
    recorder: object

    def backends(self, index: int = 0):
        return self.proxy_mounts[index].backends

    def client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60, **kwargs)

    async def wait_online(self, count: int | None = None, timeout: float = 60) -> None:
        with trio.fail_after(timeout):
            while True:
                backends = [b for m in self.proxy_mounts for b in m.backends]
                if sum(b.online for b in backends) >= (count or len(backends)):
                    return
                await trio.sleep(0.05)


def config_for(**overrides) -> Config:
    """A test config: an ephemeral port, quick deadlines; telemetry off unless given."""
    telemetry = overrides.pop("telemetry", TelemetryConfig())
    base = Config(host="127.0.0.1:0", workers=2, dir=str(PLUMBER), shutdown_timeout=5,
                  worker_wait_timeout=10, telemetry=telemetry)
    return attrs.evolve(base, **overrides)


@contextlib.asynccontextmanager
async def run_faucet(config: Config, routes=None, wait: bool = True):
    """Serve ``config`` in a nursery; on exit shut it down gracefully."""
    plan = plan_router(config, config.route) if routes is not None else plan_start(config)
    shutdown = Shutdown(config.shutdown)
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(
            partial(serve, config, plan, shutdown, routes=routes))
        running = Running(serving.binds[0], shutdown, serving.mounts, serving.recorder)
        if wait:
            await running.wait_online()
        try:
            yield running
        finally:
            shutdown.request()


def faucet_process(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``python -m faucet ARGS`` in its own session so the test can clean up after it."""
    return subprocess.Popen(
        [sys.executable, "-m", "faucet", *args],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, **kwargs)


def r_processes_of(session_pid: int) -> list[int]:
    """PIDs still alive in the process group faucet's children were started from."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,comm="], capture_output=True, text=True)
    alive = []
    for line in out.stdout.splitlines():
        pid, sid, comm = line.split(None, 2)
        if int(sid) == session_pid or comm.strip() == "R":
            alive.append(int(pid))
    return alive


def kill_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 60) -> list[str]:
    """Read stderr until a line contains ``needle``; the lines read so far."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen in faucet's output:\n{''.join(lines)}")
