"""One worker's life: spawn it, relay its output, mark it online once it accepts
connections, watch it for hangs, restart it with capped backoff when it exits or hangs,
say when it is due for replacement (max_requests, max_worker_memory), and kill its
whole process group when faucet stops. Each process gets a temporary directory of its
own (TMPDIR), removed once it has exited: R leaves its RtmpXXXXXX behind when a signal
ends it."""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

from faucet.config.app_kinds import KINDS
from faucet.config.settings import Config
from faucet.pool.backend import Backend
from faucet.pool.liveness import Probe, Watch
from faucet.pool.recycle import Limits, RecyclePolicy
from faucet.workers.app_events import WorkerEvents
from faucet.workers.command import AppSpec, withheld_variables, worker_argv, worker_env
from faucet.workers.output import LineSplitter, printable

log = logging.getLogger("faucet.supervisor")
TAIL_LINES = 20
KILL_GRACE = 5.0
PROBE_INTERVAL = 0.05
# How often a worker's resident memory is checked against max_worker_memory (a /proc
# read); max_requests is checked as each request finishes.
RECYCLE_CHECK = 0.5
SCRATCH_REMOVAL = 30.0  # seconds a process's temporary directory may take to remove


class RestartPolicy:
    """Capped exponential backoff with full jitter; forgiven once a worker stays up."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, stable_after: float = 30.0,
                 rng: random.Random | None = None):
        self.initial, self.cap, self.stable_after = initial, cap, stable_after
        self.failures = 0
        self._rng = rng or random.Random()

    def delay(self, uptime: float) -> float:
        """Seconds to wait before the next start, given how long the last run lasted."""
        if uptime >= self.stable_after:
            self.failures = 0
        ceiling = min(self.cap, self.initial * 2**self.failures)
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)


# util-linux's setpriv (essential on Debian) makes the kernel SIGTERM the worker if faucet
# itself dies, even by SIGKILL, so no worker outlives it. Without it (macOS), a worker
# outlives only a faucet killed by SIGKILL; every other exit stops its process group.
DEATH_SIGNAL = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
# Linux 5.3+: a pidfd becomes readable when the process exits. Elsewhere (macOS) the exit
# is polled for every EXIT_POLL seconds: workers exit rarely, so that costs nothing.
USE_PIDFD = hasattr(os, "pidfd_open")
EXIT_POLL = 0.1


class WorkerProcess:
    """A worker process in its own process group, with async output streams and exit.

    Spawned with subprocess.Popen on the event loop's own thread (vfork + exec, about a
    millisecond, once per start) rather than trio.lowlevel.open_process: that forks from a
    pooled worker thread, and the parent-death signal fires when the forking *thread*
    exits, which trio's idle threads do after seconds.
    """

    def __init__(self, argv: list[str], cwd, env: dict[str, str]):
        popen = subprocess.Popen(
            DEATH_SIGNAL + argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._popen = popen
        self.pid = popen.pid
        self.stdout = _stream(popen.stdout)
        self.stderr = _stream(popen.stderr)
        self._exited = _exit_fd(popen.pid)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        if self._popen.returncode is None:
            if self._exited is not None:
                await trio.lowlevel.wait_readable(self._exited)
                self._popen.wait()
            else:
                while self._popen.poll() is None:  # noqa: ASYNC110 (no event to wait on)
                    await trio.sleep(EXIT_POLL)
        return self._popen.returncode

    def close(self) -> None:
        """Release the pipes and the pidfd once the process is gone."""
        self.stdout.close()
        self.stderr.close()
        if self._exited is not None:
            os.close(self._exited)


def _exit_fd(pid: int) -> int | None:
    """A pidfd for ``pid`` where the platform has them (None: poll for the exit)."""
    if not USE_PIDFD:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:  # a kernel older than 5.3
        return None


def _stream(pipe) -> trio.lowlevel.FdStream:
    stream = trio.lowlevel.FdStream(os.dup(pipe.fileno()))
    pipe.close()
    return stream


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "unknown status"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


async def supervise_worker(
    backend: Backend,
    app: AppSpec,
    config: Config,
    *,
    worker_log: logging.LoggerAdapter | logging.Logger,
    policy: RestartPolicy | None = None,
    events: WorkerEvents | None = None,
    temp_root: Path | None = None,
    rng: random.Random | None = None,
    recycled: Callable[[], None] | None = None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the worker until cancelled, moving ``backend`` through its process's life.
    Started (for ``nursery.start``) once the first process is spawned.
    ``events``, if given, takes the app's event lines off stderr and records each start,
    online, recycle, exit and restart. With ``temp_root``, each process gets a directory
    of its own there as TMPDIR, removed once it has exited. ``rng`` draws the
    max_requests jitter. ``recycled`` (without it, no recycling) is told once the
    process is due for replacement; it serves on until its slot stops it
    (faucet.lifecycle.slot)."""
    rng = rng or random.Random()
    policy = policy or RestartPolicy()
    argv = worker_argv(app, backend.port)
    env = worker_env(os.environ, backend.worker_id, withheld_variables(config))
    busy_unseen = KINDS[app.kind].sessions  # a session computes between requests
    recycling = RecyclePolicy(config.max_requests, config.max_requests_jitter,
                              config.max_worker_memory)
    while True:
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        began = trio.current_time()
        scratch = _scratch_dir(temp_root, backend.worker_id)
        try:
            process = WorkerProcess(argv, app.workdir, _with_tmpdir(env, scratch))
        except OSError as exc:  # e.g. the executable was removed since start-up
            if scratch is not None:
                scratch.rmdir()  # made a moment ago: still empty
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            delay = policy.delay(0)
            worker_log.error("cannot start %s: %s; retrying in %.1fs", argv[0], exc, delay)
            await trio.sleep(delay)
            continue
        run = trio.CancelScope()  # ended early when the watch finds the worker hung
        watch = Watch(config.unhealthy_after,
                      partial(_take_out_of_service, backend, worker_log, run))
        backend.spawned(process.pid, watch)
        if events:
            events.started(argv, process.pid)
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        recycler = _Recycler(backend, process.pid, recycling.limits(rng), worker_log, events,
                             recycled)
        try:
            with run:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(relay_output, process.stdout, worker_log, logging.INFO, None)
                    nursery.start_soon(relay_output, process.stderr, worker_log, logging.INFO,
                                       tail, events)
                    watching = await nursery.start(_look_after, backend, process, watch,
                                                   config, busy_unseen, worker_log, events)
                    recycle = (await nursery.start(recycler.run)
                               if recycling.enabled and recycled else trio.CancelScope())
                    await process.wait()
                    watching.cancel()  # gone: nothing to bring online, check or recycle
                    recycle.cancel()
                    # Output still in the pipes is relayed; a grandchild that keeps them
                    # open must not hold the restart up.
                    nursery.cancel_scope.deadline = trio.current_time() + 1
        finally:
            backend.exited(None if process.returncode is None
                           else f"exited ({describe_exit(process.returncode)})",
                           tail[-1] if tail else None)
            with trio.move_on_after(KILL_GRACE + 1, shield=True):
                await stop_process_group(process)
            process.close()
            if scratch is not None:
                with trio.move_on_after(SCRATCH_REMOVAL, shield=True):
                    await trio.to_thread.run_sync(partial(shutil.rmtree, scratch,
                                                          ignore_errors=True))
        uptime = trio.current_time() - began
        delay = policy.delay(uptime)
        backend.restarting()
        last = "\n".join(tail) or "(no output on stderr)"
        worker_log.error("exited (%s) after %.1fs; restarting in %.1fs. Last stderr lines:\n%s",
                         describe_exit(process.returncode), uptime, delay, last)
        if events:
            events.exited(describe_exit(process.returncode), process.returncode, uptime, tail)
            events.restarting(delay, backend.restarts)
        await trio.sleep(delay)


def _scratch_dir(temp_root: Path | None, worker_id: int) -> Path | None:
    """A new directory for one process's temporary files (one mkdir: on the event loop,
    as the spawn itself), None without ``temp_root``."""
    if temp_root is None:
        return None
    return Path(tempfile.mkdtemp(prefix=f"worker-{worker_id}-", dir=temp_root))


def _with_tmpdir(env: dict[str, str], scratch: Path | None) -> dict[str, str]:
    """The environment of one process: R (``tempdir()``), Python and most tools put
    their temporary files under TMPDIR."""
    return env if scratch is None else {**env, "TMPDIR": str(scratch)}


def resident_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (its children not counted) from
    /proc/PID/statm; None when it is gone or there is no procfs. Never waits on a disk."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Recycler:
    """Tells the worker's slot once its process is due for replacement: checked as each
    request finishes (max_requests: no overshoot from polling) and every
    ``RECYCLE_CHECK`` seconds (max_worker_memory)."""

    def __init__(self, backend: Backend, pid: int, limits: Limits, worker_log,
                 events: WorkerEvents | None, recycled: Callable[[], None]):
        self.backend, self.pid, self.limits = backend, pid, limits
        self.log, self.events, self.recycled = worker_log, events, recycled

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Until the process is due (then the slot is told). Started with the cancel
        scope that ends it once the process has exited."""
        backend = self.backend
        look = RECYCLE_CHECK if self.limits.memory is not None else math.inf
        with trio.CancelScope() as scope:
            task_status.started(scope)
            served_before = backend.served
            try:
                while (reason := self._due(served_before)) is None:
                    served = trio.Event()
                    backend.on_served = served.set
                    with trio.move_on_after(look):
                        await served.wait()
            finally:
                backend.on_served = None
            backend.recycle(reason)
            self.log.info("recycling: %s; its replacement starts, and it serves until that "
                          "one is online", reason)
            if self.events:
                self.events.recycled(reason, backend.recycles)
            self.recycled()

    def _due(self, served_before: int) -> str | None:
        """Why to recycle now; None while it is not online (starting, or held by a
        reload or the scaler) or within its limits."""
        backend = self.backend
        if not backend.online:
            return None
        resident = resident_bytes(self.pid) if self.limits.memory is not None else None
        return self.limits.due(backend.served - served_before, resident)


def _take_out_of_service(backend: Backend, worker_log, run: trio.CancelScope,
                         reason: str) -> None:
    """The watch found the worker hung: route nothing more to it and end its run, whose
    cleanup stops the process group (the restart follows)."""
    backend.condemned(reason)
    worker_log.error("unhealthy: %s; restarting it", reason)
    run.cancel()


async def _look_after(backend: Backend, process: WorkerProcess, watch: Watch,
                      config: Config, busy_unseen: bool, worker_log,
                      events: WorkerEvents | None = None,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Bring the worker online, then check it every liveness_interval (0: never).
    Started with the cancel scope that ends it once the process has exited."""
    with trio.CancelScope() as scope:
        task_status.started(scope)
        if await _become_online(backend, process, config.startup_timeout,
                                worker_log, events):
            while config.liveness_interval > 0:
                await trio.sleep(config.liveness_interval)
                await _check(backend, process.pid, watch, config, busy_unseen)


async def _check(backend: Backend, pid: int, watch: Watch, config: Config,
                 busy_unseen: bool) -> None:
    """One liveness check (the rule is faucet.liveness's): a stopped process fails it;
    a worker with requests in flight is left to the response timeouts; else a probe."""
    if process_stopped(pid):
        watch.stopped()
    elif backend.inflight == 0:
        before = backend.acquired
        outcome = Probe.SILENT
        with trio.move_on_after(config.liveness_timeout):
            outcome = await probe(backend.port)
        watch.probed(outcome, maybe_busy=busy_unseen or backend.acquired != before)


PROBE_REQUEST = (b"GET /__faucet__/liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Connection: close\r\n\r\n")


async def probe(port: int) -> Probe:
    """Connect and send a tiny request (any app answers it, a 404 will do); ANSWERED as
    soon as the answer's first bytes arrive. The caller owns the deadline."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return Probe.REFUSED
    async with stream:
        try:
            await stream.send_all(PROBE_REQUEST)
            first = await stream.receive_some(16)
        except trio.BrokenResourceError:
            return Probe.REFUSED
    return Probe.ANSWERED if first else Probe.REFUSED


def process_stopped(pid: int) -> bool:
    """Whether the kernel holds the process stopped (state T or t in /proc/PID/stat).
    A procfs read never waits on a disk, so it is done on the event loop."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return False
    return bool(fields) and fields[0] in (b"T", b"t")


async def _become_online(backend: Backend, process: WorkerProcess,
                         startup_timeout: float, worker_log,
                         events: WorkerEvents | None = None) -> bool:
    """Online once the port accepts a connection (True); killed if that takes too long."""
    with trio.move_on_after(startup_timeout):
        while process.returncode is None:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", backend.port)
            except OSError:
                await trio.sleep(PROBE_INTERVAL)
                continue
            await stream.aclose()
            backend.ready()
            worker_log.info("online on 127.0.0.1:%d (pid %d)", backend.port, process.pid)
            if events:
                events.online(backend.port, process.pid)
            return True
        return False
    worker_log.error("did not accept connections within %gs (startup_timeout); killing it",
                     startup_timeout)
    _signal_group(process, signal.SIGKILL)
    return False


async def stop_process_group(process: WorkerProcess, grace: float = KILL_GRACE) -> None:
    """SIGTERM the worker's process group, SIGKILL it after ``grace`` seconds. SIGCONT
    follows SIGTERM: a stopped process acts on SIGTERM only once it runs again."""
    _signal_group(process, signal.SIGTERM)
    _signal_group(process, signal.SIGCONT)
    with trio.move_on_after(grace):
        await process.wait()
    # Always sweep the group: the leader may be gone while children linger.
    _signal_group(process, signal.SIGKILL)
    await process.wait()


def _signal_group(process: WorkerProcess, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# A worker's line that says it is a warning or an error, as R (``Error in f():``,
# ``Warning message:``, ``Warning: Error in renderText``) and uvicorn (``ERROR:``) begin
# theirs; any other line is ordinary output, R's start-up banner on stderr included.
_ALARMING = ("error", "warning")


def line_level(line: str, level: int) -> int:
    """WARNING for a line that begins like a warning or an error, else ``level``."""
    return logging.WARNING if line.lstrip().lower().startswith(_ALARMING) else level


async def relay_output(stream, worker_log, level: int, tail: deque | None,
                       events: WorkerEvents | None = None) -> None:
    """Log the worker's output line by line, at ``level`` (INFO for stdout and stderr:
    R writes its banners and messages to stderr) or WARNING for a line that begins like
    a warning or an error (``line_level``), and keep stderr's last lines for the crash
    report. A line ``events`` records as an app event is not logged. Lines are cut and
    their control characters escaped (faucet.workers.output): a worker cannot forge or
    flood faucet's log."""
    def relay(raw: bytes, cut: int) -> None:
        line = printable(raw, cut)
        if not (events and events.output(line)):
            worker_log.log(line_level(line, level), "%s", line)
        if tail is not None:
            tail.append(line)

    lines = LineSplitter()
    async for chunk in stream:
        for raw, cut in lines.feed(chunk):
            relay(raw, cut)
    if (last := lines.end()) is not None:  # the output ended without a newline
        relay(*last)
