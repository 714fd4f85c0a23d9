"""faucet.lifecycle.slot in-process: a recycle surges (the replacement is online before the worker
leaves the pool), and a replacement that never comes online leaves the worker in place.
The supervisor is played by a fake that moves each backend through its states."""

from __future__ import annotations

import trio
import trio.testing

from faucet.config.strategy import Strategy
from faucet.lifecycle.slot import run_slot
from faucet.pool.backend import RECYCLED, Backend
from faucet.pool.dispatch import Dispatcher
from faucet.proxy.mount import Generation, Mount
from faucet.proxy.upstream import UpstreamPool


class FakeSupervisor:
    """Spawns each backend it is given; brings it online unless ``starts`` says no; keeps
    the ``recycled`` callbacks so a test can say a worker is due."""

    def __init__(self, starts: bool = True):
        self.starts = starts
        self.running: list[Backend] = []
        self.cancelled: list[Backend] = []
        self.due: dict[int, object] = {}

    async def __call__(self, backend: Backend, *, recycled,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
        backend.spawned(1000 + len(self.running))
        self.running.append(backend)
        self.due[id(backend)] = recycled
        task_status.started()
        try:
            if self.starts or len(self.running) == 1:
                backend.ready()
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled.append(backend)
            raise


def one_worker_mount() -> tuple[Mount, Generation, Backend]:
    backend = Backend(1, 40001)
    dispatcher = Dispatcher([backend], Strategy.ROUND_ROBIN)
    generation = Generation(0, dispatcher, {0: UpstreamPool(backend)})
    return Mount(None, generation), generation, backend


async def test_a_recycled_worker_leaves_only_once_its_replacement_is_online(nursery):
    mount, generation, worker = one_worker_mount()
    supervisor = FakeSupervisor()
    retired: list[Generation] = []

    async def retire(mount, leaving, stop) -> None:
        retired.append(leaving)
        stop()

    await nursery.start(run_slot, mount, generation, supervisor, retire, worker)
    assert worker.online and mount.backends == [worker]
    dispatcher = mount.dispatcher
    online_seen = []  # the pool's online workers at each change routing sees
    told = dispatcher.changed

    def changed() -> None:
        online_seen.append(sum(b.online for b in dispatcher.backends))
        told()

    dispatcher.changed = worker.on_change = changed
    worker.recycle("served 3 requests (max_requests 3)")
    supervisor.due[id(worker)]()
    await trio.testing.wait_all_tasks_blocked()
    replacement = mount.backends[0]
    assert replacement is not worker and replacement.online
    assert replacement.worker_id == worker.worker_id and replacement.port != worker.port
    assert replacement.recycles == 1 and worker.held == RECYCLED
    assert [g.backends for g in retired] == [[worker]] and mount.retired == retired
    assert supervisor.cancelled == [worker]  # retire's stop ended the old process
    assert online_seen and min(online_seen) == 1  # never none: a surge, not a gap


async def test_a_replacement_that_never_comes_online_leaves_the_worker_serving(nursery):
    mount, generation, worker = one_worker_mount()
    supervisor = FakeSupervisor(starts=False)

    async def retire(mount, leaving, stop) -> None:
        raise AssertionError("nothing is retired")

    await nursery.start(run_slot, mount, generation, supervisor, retire, worker)
    worker.recycle("resident memory 400 MiB is over max_worker_memory (300 MiB)")
    supervisor.due[id(worker)]()
    await trio.testing.wait_all_tasks_blocked()
    (replacement,) = supervisor.running[1:]
    assert mount.backends == [worker] and worker.online and worker.held is None
    assert not replacement.online and worker.replacement is replacement
    assert worker.state()["recycling"]["replacement"]["state"] == "starting"
    assert mount.retired == [] and supervisor.cancelled == []
