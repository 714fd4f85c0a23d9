"""One worker's life under faucet.supervisor, played by the stand-in Rscript (no R):
online only once it accepts connections, restarted with backoff after a crash, and
stopped with SIGTERM to its whole process group, SIGKILL after the grace, nothing left."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import uuid
from functools import partial
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from faucet.config.settings import Config
from faucet.lifecycle.deploy import free_port
from faucet.pool.backend import Backend, Phase
from faucet.workers import supervisor
from faucet.workers.command import AppSpec, worker_argv, worker_env
from faucet.workers.supervisor import (
    RestartPolicy,
    WorkerProcess,
    stop_process_group,
    supervise_worker,
)
from tests.helpers import MARK, STANDIN, marked_processes, until


class Ceiling(random.Random):
    """Full jitter at its upper end: the backoff's delays become 1, 2, 4... x initial."""

    def uniform(self, a: float, b: float) -> float:
        return b


class LogWatch(logging.Handler):
    """A logger of its own for one worker, keeping its lines for the test to wait on."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._new_line = trio.Event()
        self.logger = logging.getLogger(f"tests.supervisor.{uuid.uuid4().hex}")
        self.logger.addHandler(self)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._new_line.set()
        self._new_line = trio.Event()

    async def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        """Until ``count`` lines match ``pattern`` (``re.search``); those lines."""
        while len(found := [line for line in self.lines if re.search(pattern, line)]) < count:
            await self._new_line.wait()
        return found


@attrs.define
class Watched:
    """A supervised stand-in: its backend, its log, and every online/offline change as
    (trio time, online, incarnation)."""

    backend: Backend
    log: LogWatch
    changes: list[tuple[float, bool, int]] = attrs.field(factory=list)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def on_change(self) -> None:
        self.changes.append((trio.current_time(), self.backend.online, self.backend.incarnation))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, condition) -> None:
        """Until ``condition()`` holds, checked at each change; the caller owns the deadline."""
        while not condition():
            await self._changed.wait()

    async def get(self, path: str = "/") -> str:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{self.backend.port}{path}")
        return response.text


def spec(folder: Path, rscript: Path | str = STANDIN) -> AppSpec:
    return AppSpec(kind="plumber", workdir=folder, rscript=str(rscript))


def live_in_group(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that have not exited (zombies have)."""
    members = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            state, _ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                members.append(int(entry.name))
    return members


@contextlib.asynccontextmanager
async def supervised(folder: Path, monkeypatch, *, rscript: Path | str = STANDIN,
                     startup_timeout: float = 10, policy: RestartPolicy | None = None,
                     temp_root: Path | None = None, recycled=None, **settings):
    """The stand-in supervised in a nursery (backoff 0.1 s, 0.2 s, 0.4 s...); on leaving,
    supervision is cancelled, as at faucet's shutdown, and no process any generation of
    the worker started may be left. ``settings``: more of the Config."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)  # the worker's environment is faucet's
    watched = Watched(Backend(worker_id=1, port=free_port()), LogWatch())
    watched.backend.on_change = watched.on_change
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(
            supervise_worker, watched.backend, spec(folder, rscript),
            Config(startup_timeout=startup_timeout, liveness_interval=0, **settings),
            worker_log=watched.log.logger, temp_root=temp_root, recycled=recycled,
            policy=policy or RestartPolicy(initial=0.1, rng=Ceiling())))
        with trio.fail_after(20):  # a guard against hanging, not a measure of speed
            yield watched
        nursery.cancel_scope.cancel()
    await until(lambda: not marked_processes(mark))


async def read_until(stream, text: str) -> str:
    """A worker's output until ``text`` appears in it."""
    seen = ""
    while text not in seen:
        chunk = await stream.receive_some()
        assert chunk, f"{text!r} not in the worker's output: {seen!r}"
        seen += chunk.decode()
    return seen


async def test_online_only_once_the_worker_accepts_connections(tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    monkeypatch.setenv("STANDIN_HOLD", str(gate))
    async with supervised(tmp_path, monkeypatch) as worker:
        backend = worker.backend
        assert backend.pid is not None and backend.incarnation == 1  # spawned at start
        await worker.log.wait_for("^holding$")  # running, not listening yet
        assert not backend.online and worker.changes == []
        await trio.to_thread.run_sync(gate.write_bytes, b"")
        await worker.wait_until(lambda: backend.online)
        assert worker.changes == [(worker.changes[0][0], True, 1)]
        (line,) = await worker.log.wait_for("^online on")
        assert line == f"online on 127.0.0.1:{backend.port} (pid {backend.pid})"
        assert await worker.get() == "worker 1"
        assert backend.restarts == 0


@pytest.fixture(params=["linux", "portable"])
def platform_calls(request, monkeypatch):
    """Each test that takes this runs twice: with Linux's pidfd and setpriv, and with the
    fallbacks faucet uses where they are missing (macOS): exits polled, no setpriv."""
    if request.param == "portable":
        monkeypatch.setattr(supervisor, "USE_PIDFD", False)
        monkeypatch.setattr(supervisor, "DEATH_SIGNAL", [])
    return request.param


async def test_crash_restarts_with_growing_backoff_and_a_new_incarnation(tmp_path, monkeypatch,
                                                                        platform_calls):
    monkeypatch.setenv("STANDIN_EXIT_AFTER", "1")
    policy = RestartPolicy(initial=0.2, cap=10, rng=Ceiling())
    async with supervised(tmp_path, monkeypatch, policy=policy) as worker:
        backend = worker.backend
        for incarnation, delay in ((2, 0.2), (3, 0.4)):
            await worker.wait_until(lambda: backend.online)
            crashed_pid = backend.pid
            assert await worker.get() == "worker 1"  # its last answer: then it exits
            await worker.wait_until(lambda g=incarnation: backend.online and
                                    backend.incarnation == g)
            assert backend.restarts == incarnation - 1 and backend.pid != crashed_pid
            with pytest.raises(ProcessLookupError):
                os.kill(crashed_pid, 0)  # exited and reaped
            (went_down, _, _), (came_up, _, _) = worker.changes[-2:]
            assert worker.changes[-2:] == [(went_down, False, incarnation - 1),
                                           (came_up, True, incarnation)]
            assert came_up - went_down >= delay
        first, second = await worker.log.wait_for(r"^exited \(exit status 3\)", count=2)
        assert first.endswith("; restarting in 0.2s. Last stderr lines:\n"
                              "exiting after 1 requests")
        assert second.endswith("; restarting in 0.4s. Last stderr lines:\n"
                               "exiting after 1 requests")


async def test_a_drained_worker_stays_out_of_routing_when_its_process_restarts(
        tmp_path, monkeypatch):
    """The bug this state machine fixed: an rps worker drained while its process
    restarted came back into rotation when the new process came online."""
    monkeypatch.setenv("STANDIN_EXIT_AFTER", "1")
    policy = RestartPolicy(initial=0.1, rng=Ceiling())
    async with supervised(tmp_path, monkeypatch, policy=policy) as worker:
        backend = worker.backend
        await worker.wait_until(lambda: backend.online)
        backend.drain("scaled down")
        assert await worker.get() == "worker 1"  # its last answer: then it exits
        await until(lambda: backend.incarnation == 2 and backend.phase is Phase.ONLINE)
        assert not backend.online and backend.status == "draining (scaled down)"
        backend.resume()
        assert backend.online


async def test_worker_that_never_listens_is_killed_at_the_startup_timeout(tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    os.mkfifo(gate)  # never written: the stand-in never listens
    monkeypatch.setenv("STANDIN_HOLD", str(gate))
    async with supervised(tmp_path, monkeypatch, startup_timeout=0.3) as worker:
        # Killed, restarted after the backoff, and the next one killed in its turn.
        await worker.log.wait_for(
            r"^did not accept connections within 0\.3s \(startup_timeout\); killing it$",
            count=2)
        exited = await worker.log.wait_for(r"^exited \(killed by SIGKILL\)")
        assert "; restarting in 0.1s." in exited[0]
        assert worker.backend.incarnation >= 2
        assert not worker.backend.online and worker.changes == []


async def test_missing_executable_is_retried_with_backoff_and_reported(tmp_path, monkeypatch):
    async with supervised(tmp_path, monkeypatch, rscript=tmp_path / "gone") as worker:
        # Reported as the spawn's error, or (through setpriv) as the exit and its stderr.
        failures = await worker.log.wait_for(r"(retrying|restarting) in \d", count=3)
        assert [re.search(r" in (\S+)s\b", line).group(1) for line in failures] == [
            "0.1", "0.2", "0.4"]
        assert all("No such file or directory" in line for line in failures)
        assert not worker.backend.online and worker.changes == []


async def test_stop_sends_sigterm_to_the_whole_process_group(platform_calls, tmp_path,
                                                             monkeypatch):
    ended = tmp_path / "child-ended-by"
    monkeypatch.setenv("STANDIN_CHILD", str(ended))
    async with supervised(tmp_path, monkeypatch) as worker:
        await worker.wait_until(lambda: worker.backend.online)
        group = worker.backend.pid
        assert len(live_in_group(group)) == 2  # the stand-in and its child
    # Leaving ``supervised`` cancelled the supervision and found no process left.
    assert ended.read_text() == "SIGTERM"


@pytest.mark.parametrize("ignores_term", [False, True])
async def test_sigkill_follows_only_when_the_grace_runs_out(tmp_path, monkeypatch, ignores_term):
    ended = tmp_path / "child-ended-by"
    mark = uuid.uuid4().hex
    env = worker_env({**os.environ, "STANDIN_CHILD": str(ended), MARK: mark}, 1, frozenset())
    if ignores_term:
        env["STANDIN_IGNORE_TERM"] = "1"
    process = WorkerProcess(worker_argv(spec(tmp_path), free_port()), tmp_path, env)
    try:
        with trio.fail_after(10):
            await read_until(process.stdout, "listening on")
        grace = 0.5 if ignores_term else 60
        began = trio.current_time()
        with trio.fail_after(10):
            await stop_process_group(process, grace=grace)
        if ignores_term:
            assert trio.current_time() - began >= grace
            assert process.returncode == -signal.SIGKILL
            assert "ignoring SIGTERM" in await read_until(process.stderr, "SIGTERM")
        else:  # gone at the SIGTERM: the grace is not waited out
            assert process.returncode == -signal.SIGTERM
        assert ended.read_text() == "SIGTERM"  # the child was signalled too
        await until(lambda: not marked_processes(mark))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.close()
