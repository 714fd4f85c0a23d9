"""Dispatcher waiting and queueing, with trio's virtual clock (no sockets)."""

import pytest
import trio

from faucet.dispatch import Dispatcher, QueueFull
from faucet.pool import Backend


def backends(count: int, online: bool = True) -> list[Backend]:
    return [Backend(worker_id=i + 1, port=1000 + i, online=online) for i in range(count)]


async def test_round_robin_spreads_over_online_workers():
    dispatcher = Dispatcher(backends(3), "round-robin")
    dispatcher.backends[1].online = False
    picked = []
    for _ in range(4):
        backend, _ = await dispatcher.acquire()
        picked.append(backend.worker_id)
        dispatcher.release(backend)
    assert picked == [1, 3, 1, 3]


async def test_request_waits_until_a_worker_comes_online(autojump_clock):
    dispatcher = Dispatcher(backends(2, online=False), "round-robin")

    async def bring_up():
        await trio.sleep(2)
        dispatcher.backends[1].online = True
        dispatcher.changed()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bring_up)
        start = trio.current_time()
        backend, _ = await dispatcher.acquire()
        assert backend.worker_id == 2 and trio.current_time() - start == pytest.approx(2)


async def test_caller_deadline_bounds_the_wait(autojump_clock):
    dispatcher = Dispatcher(backends(1, online=False), "round-robin")
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(5):
            await dispatcher.acquire()


async def test_least_busy_queues_fifo_and_hands_over_on_release(autojump_clock):
    dispatcher = Dispatcher(backends(2), "least-busy", max_inflight=1)
    first, _ = await dispatcher.acquire()
    second, _ = await dispatcher.acquire()
    assert {first.worker_id, second.worker_id} == {1, 2}
    order = []

    async def waiter(name):
        backend, _ = await dispatcher.acquire()
        order.append((name, backend.worker_id))

    async with trio.open_nursery() as nursery:
        for name in "abc":
            nursery.start_soon(waiter, name)
            await trio.sleep(0.1)
        assert dispatcher.queued() == 3
        dispatcher.release(second)
        await trio.sleep(0.1)
        dispatcher.release(first)
        await trio.sleep(0.1)
        assert order == [("a", second.worker_id), ("b", first.worker_id)]
        dispatcher.release(dispatcher.backends[0])
    assert order[2][0] == "c"


async def test_least_busy_queue_is_bounded(autojump_clock):
    dispatcher = Dispatcher(backends(1), "least-busy", max_queue=1)
    await dispatcher.acquire()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher.acquire)
        await trio.sleep(0.1)
        with pytest.raises(QueueFull):
            await dispatcher.acquire()
        nursery.cancel_scope.cancel()
    assert dispatcher.queued() == 0


async def test_cancelled_waiter_leaves_the_queue_and_returns_a_handed_backend(autojump_clock):
    dispatcher = Dispatcher(backends(1), "least-busy")
    held, _ = await dispatcher.acquire()
    with trio.move_on_after(1):
        await dispatcher.acquire()
    assert dispatcher.queued() == 0
    dispatcher.release(held)
    assert held.inflight == 0


async def test_sticky_waits_a_grace_then_moves(autojump_clock):
    dispatcher = Dispatcher(backends(3), "cookie-hash", sticky_grace=3)
    key = 4  # 4 % 3 -> backend index 1 (worker 2)
    backend, moved = await dispatcher.acquire(key)
    assert backend.worker_id == 2 and not moved
    dispatcher.release(backend)
    dispatcher.backends[1].online = False
    start = trio.current_time()
    backend, moved = await dispatcher.acquire(key)
    assert moved and backend.worker_id == 3
    assert trio.current_time() - start == pytest.approx(3)


async def test_sticky_stays_when_its_worker_returns_within_the_grace(autojump_clock):
    dispatcher = Dispatcher(backends(2), "ip-hash", sticky_grace=3)
    dispatcher.backends[0].online = False

    async def restart():
        await trio.sleep(1)
        dispatcher.backends[0].online = True
        dispatcher.changed()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(restart)
        backend, moved = await dispatcher.acquire(0)
    assert backend.worker_id == 1 and not moved
