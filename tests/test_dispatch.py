"""Dispatcher waiting and queueing, with trio's virtual clock (no sockets): a
``trio.sleep`` here is virtual time passing, and ``wait_all_tasks_blocked`` lets the
other tasks run until they wait."""

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from faucet.config.strategy import Strategy
from faucet.pool.dispatch import Dispatcher, QueueFull
from tests.helpers import make_backends, set_online


async def bring_online(dispatcher: Dispatcher, index: int, after: float) -> None:
    """Backend ``index`` comes online ``after`` seconds, as its supervisor reports it."""
    await trio.sleep(after)
    set_online(dispatcher.backends[index], True)


async def test_round_robin_spreads_over_online_workers():
    dispatcher = Dispatcher(make_backends(3), Strategy.ROUND_ROBIN)
    set_online(dispatcher.backends[1], False)
    picked = []
    for _ in range(4):
        lease = await dispatcher.acquire()
        picked.append(lease.backend.worker_id)
        dispatcher.release(lease)
    assert picked == [1, 3, 1, 3]


async def test_request_waits_until_a_worker_comes_online(autojump_clock):
    dispatcher = Dispatcher(make_backends(2, online=False), Strategy.ROUND_ROBIN)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bring_online, dispatcher, 1, 2)
        start = trio.current_time()
        lease = await dispatcher.acquire()
        assert lease.backend.worker_id == 2 and trio.current_time() - start == pytest.approx(2)


# Every way acquire can wait: each strategy, with and without a sticky key (6 hashes to
# worker 1, which never comes up here, so a sticky client moves once its grace is over).
WAYS = [(strategy, key) for strategy in Strategy for key in (None, 6)]


@pytest.mark.parametrize(("strategy", "key"), WAYS)
async def test_first_request_waits_for_the_first_worker_to_come_online(
        strategy, key, autojump_clock):
    """Workers still starting (none has ever been online): the request waits, it is not
    refused at once."""
    dispatcher = Dispatcher(make_backends(2, online=False), strategy, sticky_grace=3)

    async def bring_up():
        await trio.sleep(10)
        set_online(dispatcher.backends[1], True)
        dispatcher.changed()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bring_up)
        assert dispatcher.try_acquire(key, job="/x") is None
        with trio.fail_after(30):  # as the proxy's worker_wait_timeout
            lease = await dispatcher.acquire(key, job="/x")
    assert lease.backend.worker_id == 2 and trio.current_time() == pytest.approx(10)
    assert lease.backend.inflight == 1 and dispatcher.queued() == 0


@pytest.mark.parametrize(("strategy", "key"), WAYS)
async def test_caller_deadline_bounds_the_wait(strategy, key, autojump_clock):
    dispatcher = Dispatcher(make_backends(2, online=False), strategy, sticky_grace=3)
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(5):
            await dispatcher.acquire(key, job="/x")
    assert trio.current_time() == pytest.approx(5) and dispatcher.queued() == 0


async def test_least_busy_queues_fifo_and_hands_over_on_release(autojump_clock):
    dispatcher = Dispatcher(make_backends(2), Strategy.LEAST_BUSY, max_inflight=1)
    first = await dispatcher.acquire()
    second = await dispatcher.acquire()
    assert {first.backend.worker_id, second.backend.worker_id} == {1, 2}
    order = []
    leases = []

    async def waiter(name):
        lease = await dispatcher.acquire()
        leases.append(lease)
        order.append((name, lease.backend.worker_id))

    async with trio.open_nursery() as nursery:
        for name in "abc":
            nursery.start_soon(waiter, name)
            await wait_all_tasks_blocked()
        assert dispatcher.queued() == 3
        dispatcher.release(second)
        await wait_all_tasks_blocked()
        dispatcher.release(first)
        await wait_all_tasks_blocked()
        assert order == [("a", second.backend.worker_id), ("b", first.backend.worker_id)]
        dispatcher.release(leases[0])
    assert order[2][0] == "c"


async def test_least_busy_queue_is_bounded(autojump_clock):
    dispatcher = Dispatcher(make_backends(1), Strategy.LEAST_BUSY, max_queue=1)
    await dispatcher.acquire()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher.acquire)
        await wait_all_tasks_blocked()
        with pytest.raises(QueueFull):
            await dispatcher.acquire()
        nursery.cancel_scope.cancel()
    assert dispatcher.queued() == 0


async def test_cancelled_waiter_leaves_the_queue_and_returns_a_handed_backend(autojump_clock):
    dispatcher = Dispatcher(make_backends(1), Strategy.LEAST_BUSY)
    held = await dispatcher.acquire()
    with trio.move_on_after(1):
        await dispatcher.acquire()
    assert dispatcher.queued() == 0
    dispatcher.release(held)
    assert held.backend.inflight == 0


async def test_sticky_waits_a_grace_then_moves(autojump_clock):
    dispatcher = Dispatcher(make_backends(3), Strategy.COOKIE_HASH, sticky_grace=3)
    key = 4  # 4 % 3 -> backend index 1 (worker 2)
    lease = await dispatcher.acquire(key)
    assert lease.backend.worker_id == 2 and not lease.moved
    dispatcher.release(lease)
    set_online(dispatcher.backends[1], False)
    start = trio.current_time()
    lease = await dispatcher.acquire(key)
    assert lease.moved and lease.backend.worker_id == 3
    assert trio.current_time() - start == pytest.approx(3)


async def test_sticky_stays_when_its_worker_returns_within_the_grace(autojump_clock):
    dispatcher = Dispatcher(make_backends(2), Strategy.IP_HASH, sticky_grace=3)
    set_online(dispatcher.backends[0], False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bring_online, dispatcher, 0, 1)
        lease = await dispatcher.acquire(0)
    assert lease.backend.worker_id == 1 and not lease.moved


async def test_least_busy_pipelines_only_quick_work_behind_quick_work(autojump_clock):
    dispatcher = Dispatcher(make_backends(1), Strategy.LEAST_BUSY)
    dispatcher.release(await dispatcher.acquire(job="/echo"), seconds=0.002)
    dispatcher.release(await dispatcher.acquire(job="/sleep"), seconds=0.2)
    assert dispatcher.known_quick("/echo") and not dispatcher.known_quick("/sleep")
    assert not dispatcher.known_quick("/never-seen")

    quick = await dispatcher.acquire(job="/echo")
    behind_quick = await dispatcher.acquire(job="/echo")  # waits in R's socket briefly
    assert behind_quick.backend is quick.backend and quick.backend.inflight == 2
    dispatcher.release(behind_quick, 0.002)
    with trio.move_on_after(1):  # R could read a pipelined slow job before the quick one
        await dispatcher.acquire(job="/sleep")
        raise AssertionError("a slow job was pipelined")
    dispatcher.release(quick, 0.002)
    assert quick.backend.inflight == quick.backend.slow_inflight == 0


async def test_unknown_and_slow_work_is_never_pipelined_behind(autojump_clock):
    dispatcher = Dispatcher(make_backends(1), Strategy.LEAST_BUSY)
    await dispatcher.acquire(job="/first-time")
    with trio.move_on_after(1):
        await dispatcher.acquire(job="/first-time")
        raise AssertionError("pipelined behind a job of unknown length")


class BusyWorker:
    """One least-busy worker that has learnt /echo (0.01 s: quick) and /slow (0.05 s) and
    is busy with a /slow job until ``free()``; ``request`` records the order jobs start."""

    async def __aenter__(self):
        self.dispatcher = Dispatcher(make_backends(1), Strategy.LEAST_BUSY)
        self.dispatcher.release(await self.dispatcher.acquire(job="/echo"), seconds=0.01)
        self.dispatcher.release(await self.dispatcher.acquire(job="/slow"), seconds=0.05)
        self.held = await self.dispatcher.acquire(job="/slow")  # nothing pipelines behind
        self.started = []
        self.nursery_manager = trio.open_nursery()
        self.nursery = await self.nursery_manager.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self.nursery_manager.__aexit__(*exc)

    def free(self) -> None:
        self.dispatcher.release(self.held)

    async def queue(self, *jobs: str) -> None:
        for job in jobs:
            self.nursery.start_soon(self._request, job)
            await wait_all_tasks_blocked()  # queued in this order

    async def _request(self, job: str) -> None:
        lease = await self.dispatcher.acquire(job=job)
        self.started.append(job)
        await trio.sleep(1)
        self.dispatcher.release(lease)


async def test_quick_and_slow_jobs_share_the_workers_time_while_both_wait(autojump_clock):
    async with BusyWorker() as worker:
        await worker.queue(*["/slow"] * 3, *["/echo"] * 12)
        worker.free()
    # One slow job (0.05 s) buys the quick ones about as much time (5 x 0.01 s): quick
    # requests pass the slow ones, yet no slow one starves behind all the quick ones.
    slow_at = [i for i, job in enumerate(worker.started) if job == "/slow"]
    assert slow_at[0] <= 2 and len(slow_at) == 3
    gaps = [later - earlier - 1 for earlier, later in zip(slow_at, slow_at[1:], strict=False)]
    assert all(4 <= gap <= 6 for gap in gaps)


async def test_time_owed_to_quick_jobs_survives_a_moment_when_only_slow_ones_wait(autojump_clock):
    """In a closed loop the quick queue empties between nearly every two requests; the
    time a slow job took must still buy the quick ones their turns afterwards."""
    async with BusyWorker() as worker:
        await worker.queue("/slow")  # alone in the queue: served next
        worker.free()
        await wait_all_tasks_blocked()
        await worker.queue("/slow", *["/echo"] * 8)
    assert worker.started[0] == "/slow"
    # 0.05 s of slow work is owed back as about five 0.01 s quick jobs.
    assert 4 <= worker.started.index("/slow", 1) - 1 <= 6
