"""Running faucet inside a test: in-process (for state and speed) or as a subprocess
(for signals and exit codes); the stand-in workers, test events, and bounded waits for
real conditions (never a sleep as synchronisation)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import attrs
import httpx
import trio

from faucet.app import Shutdown, serve
from faucet.config.settings import Config, TelemetryConfig
from faucet.edge.front import Limits
from faucet.edge.front import serve as serve_front
from faucet.edge.hypercorn_adapter import HypercornConfig
from faucet.events import HttpEvent
from faucet.lifecycle.deploy import Reloads
from faucet.lifecycle.plan import plan_router, plan_start
from faucet.pool.backend import Backend, Phase
from faucet.sinks import register_sink, unregister_sink

ROOT = Path(__file__).resolve().parent.parent
PLUMBER = ROOT / "examples" / "plumber"
SHINY = ROOT / "examples" / "shiny"
FASTAPI = ROOT / "examples" / "fastapi"
# A Python stand-in for Rscript (see its docstring): an HTTP server on faucet's port.
STANDIN = ROOT / "tests" / "standin" / "Rscript"
# In the environment of processes a test starts, to find them (not named FAUCET_*:
# faucet warns about FAUCET_* names that are no setting).
MARK = "TEST_FAUCET_MARK"


@attrs.define
class Running:
    """A faucet served from a test's nursery."""

    url: str
    shutdown: Shutdown
    proxy_mounts: list
    recorder: object
    deployer: object = None

    def backends(self, index: int = 0):
        return self.proxy_mounts[index].backends

    def client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60, **kwargs)

    async def wait_online(self, count: int | None = None) -> None:
        """Until ``count`` workers (default: all) are online; the caller owns the deadline."""
        backends = [b for m in self.proxy_mounts for b in m.backends]
        await self.wait_until(lambda: sum(b.online for b in backends) >= (count or len(backends)))

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds, checked whenever a worker goes online or offline;
        the caller owns the deadline."""
        while not condition():
            async with trio.open_nursery() as nursery:
                for mount in self.proxy_mounts:
                    nursery.start_soon(_next_change, mount.dispatcher, condition,
                                       nursery.cancel_scope)


async def _next_change(dispatcher, condition, done: trio.CancelScope) -> None:
    # Checked again here, with no checkpoint before the wait begins: a change between the
    # caller's check and this task's start is not missed.
    if not condition():
        await dispatcher.wait_changed()
    done.cancel()


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
async def run_faucet(config: Config, routes=None, wait: bool = True, load=None):
    """Serve ``config`` in a nursery; on exit shut it down gracefully. With ``load``,
    reloads (and ``watch``) read what it returns, as the command line's do."""
    plan = plan_router(config, config.route) if routes is not None else plan_start(config)
    shutdown = Shutdown(config.shutdown, config.shutdown_delay)
    reloads = Reloads() if load is not None else None
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(
            partial(serve, config, plan, shutdown, routes=routes, reloads=reloads, load=load))
        running = Running(serving.binds[0], shutdown, serving.mounts, serving.recorder,
                          serving.deployer)
        if wait:
            with trio.fail_after(60):
                await running.wait_online()
        try:
            yield running
        finally:
            shutdown.request()


def never_listening_rscript(folder: Path) -> str:
    """A stand-in Rscript that runs but never accepts connections: no worker comes online."""
    script = folder / "Rscript"
    script.write_text("#!/bin/sh\nexec sleep 600\n")
    script.chmod(0o755)
    return str(script)


def make_event(i: int = 0, **changes) -> HttpEvent:
    """A complete telemetry event whose ``elapsed`` (and id, and microsecond) is ``i``."""
    event = HttpEvent(
        request_uuid=uuid.UUID(int=i),
        namespace="faucet",
        version="1.0",
        target="Worker::1",
        worker_route=None,
        worker_id=1,
        ip_addr=ipaddress.ip_address("192.0.2.7"),
        method="GET",
        path="/echo",
        query_params="msg=hi",
        http_version="HTTP/1.1",
        status=200,
        user_agent="test",
        elapsed=i,
        time=datetime.datetime(2024, 5, 1, 12, 0, 0, i, tzinfo=datetime.UTC),
    )
    return attrs.evolve(event, **changes)


# --- faucet as a subprocess --------------------------------------------------------------


def faucet_process(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``python -m faucet ARGS`` in its own session; its environment carries a unique
    mark that every worker inherits, so ``leftover_processes`` can find them."""
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "faucet", *args],
        env={**os.environ, **(env or {}), MARK: mark}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)
    proc.mark = mark
    return proc


def run_to_exit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``faucet ARGS`` until it exits by itself, which must leave no process behind."""
    proc = faucet_process(*args, env=env)
    try:
        out, err = proc.communicate(timeout=60)
        assert leftover_processes(proc) == []
    finally:
        kill_session(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@attrs.define
class Served:
    """A faucet subprocess that listens at ``url``; ``read`` is its stderr read so far."""

    proc: subprocess.Popen
    url: str
    read: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> tuple[str, str]:
        """SIGTERM; (stdout, all of stderr) once faucet exited, which it must do with 0."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, self.read + err
        return out, self.read + err


@contextlib.contextmanager
def served(*args: str, online: int = 0, env: dict | None = None) -> Iterator[Served]:
    """``faucet ARGS --host 127.0.0.1:0``, yielded once it listens and workers 1 to
    ``online`` are online; its whole session (workers included) is killed afterwards."""
    proc = faucet_process(*args, "--host", "127.0.0.1:0", env=env)
    try:
        read = wait_for_line(proc, "faucet listening on",
                             *(f"Worker::{i} online" for i in range(1, online + 1)))
        url = re.search(r"faucet listening on (\S+)", read).group(1)
        yield Served(proc, url, read)
    finally:
        kill_session(proc)


async def keep_asking(client: httpx.AsyncClient, path: str, statuses: list[int],
                      done: trio.Event) -> None:
    """Load: GET ``path`` again and again until ``done``, each answer's status kept."""
    while not done.is_set():
        statuses.append((await client.get(path)).status_code)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie not yet reaped counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def leftover_processes(proc: subprocess.Popen) -> list[int]:
    """PIDs still alive that were started by faucet ``proc`` (by its environment mark)."""
    return [pid for pid in marked_processes(proc.mark) if pid != proc.pid]


def marked_processes(mark: str) -> list[int]:
    """PIDs still alive (not even zombies) whose environment has TEST_FAUCET_MARK=mark."""
    needle = f"{MARK}={mark}".encode()
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
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


def wait_for_line(proc: subprocess.Popen, *needles: str, timeout: float = 60) -> str:
    """Read faucet's stderr until every one of ``needles`` has appeared; the text read so
    far. Never blocks past ``timeout``, even when faucet goes quiet (raw reads: no hidden
    buffering)."""
    text = ""
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout

    def missing() -> list[str]:
        return [needle for needle in needles if needle not in text]

    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while missing() and (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text += chunk.decode("utf-8", "replace")
    if missing():
        raise AssertionError(f"{missing()!r} not seen in faucet's output:\n{text}")
    return text


# --- bounded waits for conditions that have no event --------------------------------------

POLL = 0.01  # seconds between two looks at a condition
UNTIL_BOUND = 20


def wait_until(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    """Poll ``check`` (blocking: for sync tests) until it returns something truthy, and
    return that; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(POLL)
    return result


async def until(condition: Callable[[], object]) -> None:
    """Wait for ``condition()``, for state that offers no event to wait on (a process's
    exit seen from outside, the recorder's plain counters). TooSlowError after
    ``UNTIL_BOUND`` seconds: a guard against hanging, not a measure of speed."""
    with trio.fail_after(UNTIL_BOUND):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(POLL)


class AsgiApp:
    """A plain ASGI app as faucet's front door calls its app (faucet's Proxy takes the
    typed Request itself); the requests the front refused are kept in ``refusals``."""

    def __init__(self, app):
        self.app = app
        self.refusals: list[tuple[str, bytes, int]] = []

    async def serve_http(self, request, receive, send) -> None:
        await self.app({"type": "http", "http_version": request.http_version,
                        "method": request.method, "scheme": request.scheme,
                        "path": request.path, "raw_path": request.raw_path,
                        "query_string": request.query, "root_path": "",
                        "headers": list(request.headers), "client": request.client},
                       receive, send)

    def refused(self, request, status: int) -> None:
        self.refusals.append((request.method, request.raw_path, status))

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


async def start_front(nursery: trio.Nursery, app, limits: Limits | None = None,
                      max_head: int = 16384,
                      closing: trio.Event | None = None,
                      keep_alive: float = 30) -> tuple[int, trio.Event]:
    """faucet's front door serving ``app`` on a free loopback port: (port, the event that
    stops it). ``closing``: its shutdown's first step (Connection: close from then on);
    ``keep_alive``: seconds an idle connection stays open."""
    limits = limits or Limits()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = keep_alive
    config.h11_max_incomplete_size = max_head
    config.graceful_timeout = 5
    stopping = trio.Event()
    front_app = app if isinstance(app, AsgiApp) else AsgiApp(app)
    binds = await nursery.start(partial(serve_front, front_app, config, stopping, limits,
                                        closing=closing))
    return int(binds[0].rsplit(":", 1)[1]), stopping


async def read_all(stream: trio.SocketStream) -> bytes:
    """Everything until the server closes the connection (10 s at most)."""
    data = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


def make_backends(count: int, online: bool = True) -> list[Backend]:
    """``count`` backends of one app (workers 1, 2...), online or never started."""
    out = [Backend(worker_id=i + 1, port=1000 + i) for i in range(count)]
    for backend in out:
        if online:
            bring_online(backend)
    return out


def bring_online(backend: Backend) -> None:
    """As its supervisor does: a process spawned, then accepting connections."""
    backend.spawned(pid=1)
    backend.ready()


def set_online(backend: Backend, online: bool) -> None:
    """Into routing (its process started first if it has none running) or out of it,
    as a drain does."""
    if online:
        backend.resume()
        if backend.phase is not Phase.ONLINE:
            bring_online(backend)
    else:
        backend.drain("taken out by the test")
