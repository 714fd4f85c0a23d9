"""An rps pool under faucet.scaler: real stand-in workers (tests/standin/Rscript, no R)
started and stopped by the load a Dispatcher sees, on trio's virtual clock. The clock
jumps once every task has waited ``AUTOJUMP`` real seconds, so a 30 s grace passes in a
moment while the workers' processes start and stop in real time."""

from __future__ import annotations

import logging
import uuid
from functools import partial
from pathlib import Path

import trio

from faucet.config.settings import Config
from faucet.config.strategy import Strategy
from faucet.lifecycle.deploy import free_port
from faucet.pool.autoscale import Policy
from faucet.pool.backend import Backend
from faucet.pool.dispatch import Dispatcher
from faucet.pool.scaler import TICK, scale_workers
from faucet.workers.command import AppSpec
from faucet.workers.supervisor import supervise_worker
from tests.helpers import MARK, STANDIN, marked_processes, until

AUTOJUMP = 0.01
STOPPED = "stopped (scaled down)"
DRAINING = "draining (scaled down)"


async def wait_for(condition, seconds: float = 300) -> None:
    """Until ``condition()`` holds, looked at every scaler tick; ``seconds`` of the
    virtual clock bound it (a guard against hanging)."""
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 (the phases change at ticks, no event)
            await trio.sleep(TICK)


async def test_a_burst_starts_workers_and_idle_ones_drain_and_stop(
        tmp_path: Path, monkeypatch, mock_clock):
    mock_clock.autojump_threshold = AUTOJUMP
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)  # the workers' environment is faucet's
    backends = [Backend(worker_id=i, port=free_port()) for i in (1, 2, 3)]
    dispatcher = Dispatcher(backends, Strategy.RPS)
    spec = AppSpec(kind="plumber", workdir=tmp_path, rscript=str(STANDIN))
    policy = Policy(max_rps=5, min_workers=1, max_workers=3, scale_down_after=10)
    served_by: list[int] = []

    async def request(seconds: float) -> None:
        lease = await dispatcher.acquire()
        served_by.append(lease.backend.worker_id)
        await trio.sleep(seconds)
        dispatcher.release(lease, seconds)

    async with trio.open_nursery() as nursery:
        supervise = partial(supervise_worker, app=spec,
                            config=Config(startup_timeout=600, liveness_interval=0),
                            worker_log=logging.getLogger("test.scaler"))
        await nursery.start(scale_workers, dispatcher, policy, supervise)
        assert backends[0].pid is not None  # spawned before started() returned
        assert [b.state()["state"] for b in backends] == ["starting", STOPPED, STOPPED]
        await wait_for(lambda: backends[0].online)

        async with trio.open_nursery() as burst:  # 12 requests of 1 s at once
            for _ in range(12):
                burst.start_soon(request, 1.0)
        assert set(served_by) == {1, 2, 3}  # the pool grew to serve them
        assert len(marked_processes(mark)) == 3

        # Two requests outlast the grace: the least recently busy worker drains and stops
        # at once; of the two busy ones, one must stay (min_workers) and the other
        # drains, out of routing, until its request ends.
        first, second = await dispatcher.acquire(), await dispatcher.acquire()
        idle = next(b for b in backends if b not in (first.backend, second.backend))
        draining = max(first.backend, second.backend, key=lambda b: b.index)
        kept = min(first.backend, second.backend, key=lambda b: b.index)
        await wait_for(lambda: idle.status == STOPPED and draining.status == DRAINING)
        assert idle.pid is None and not idle.online
        assert not draining.online and draining.pid in marked_processes(mark)
        assert len(marked_processes(mark)) == 2
        dispatcher.release(first if first.backend is draining else second)
        await wait_for(lambda: draining.status == STOPPED)
        dispatcher.release(first if first.backend is kept else second)
        assert marked_processes(mark) == [kept.pid]
        assert kept.online and kept.state()["state"] == "online"
        assert draining.state() | {"port": None} == {
            "worker_id": draining.worker_id, "target": draining.target, "route": None,
            "generation": 0, "online": False, "state": "stopped (scaled down)", "pid": None,
            "port": None,
            "inflight": 0, "sessions": 0, "served": draining.served,
            "restarts": draining.restarts, "recycles": 0, "last_failure": None,
            "recycling": None}
        nursery.cancel_scope.cancel()
    await until(lambda: not marked_processes(mark))
