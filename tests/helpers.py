"""Running faucet inside a test: in-process (for state and speed) or as a subprocess
(for signals and exit codes)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import attrs
import httpx
import trio

from faucet.app import Shutdown, plan_router, plan_start, serve
from faucet.config import Config, TelemetryConfig
from faucet.sinks import register_sink, unregister_sink

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

    async def wait_online(self, count: int | None = None) -> None:
        """Until ``count`` workers (default: all) are online; the caller owns the deadline."""
        backends = [b for m in self.proxy_mounts for b in m.backends]
        while sum(b.online for b in backends) < (count or len(backends)):
            async with trio.open_nursery() as nursery:
                for mount in self.proxy_mounts:
                    nursery.start_soon(_first_change, mount.dispatcher, nursery.cancel_scope)


async def _first_change(dispatcher, scope) -> None:
    await dispatcher.wait_changed()
    scope.cancel()


@contextlib.contextmanager
def registered_sink(name: str, factory):
    """``factory`` in the in-process sink registry as ``name`` for the block."""
    register_sink(name, factory)
    try:
        yield
    finally:
        unregister_sink(name)


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
            with trio.fail_after(60):
                await running.wait_online()
        try:
            yield running
        finally:
            shutdown.request()


def faucet_process(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``python -m faucet ARGS`` in its own session; its environment carries a unique
    mark that every worker inherits, so ``leftover_processes`` can find them (not named
    FAUCET_*: faucet warns about FAUCET_* names that are no setting)."""
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "faucet", *args],
        env={**os.environ, **(env or {}), "TEST_FAUCET_MARK": mark}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)
    proc.mark = mark
    return proc


def leftover_processes(proc: subprocess.Popen) -> list[int]:
    """PIDs still alive that were started by faucet ``proc`` (by its environment mark)."""
    needle = f"TEST_FAUCET_MARK={proc.mark}".encode()
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != proc.pid:
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    alive.append(int(entry.name))
    return alive


def kill_session(proc: subprocess.Popen) -> None:
    """Kill faucet and, since each worker has a process group of its own, its workers."""
    pids = leftover_processes(proc)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    """Read faucet's stderr until ``needle`` appears; the text read so far. Never blocks
    past ``timeout``, even when faucet goes quiet (raw reads: no hidden buffering)."""
    text = ""
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while needle not in text and (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text += chunk.decode("utf-8", "replace")
    if needle not in text:
        raise AssertionError(f"{needle!r} not seen in faucet's output:\n{text}")
    return text
