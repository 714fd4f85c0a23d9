"""Recycles with real R workers under load (issue 17 item 3), by request count and by
memory: each worker's replacement starts before it stops, so no request fails and the
pool never has fewer workers online than its size; the replaced processes are gone once
they have drained."""

from __future__ import annotations

import trio

from tests.helpers import alive, config_for, keep_asking, run_faucet, until

# A Plumber app whose /grow keeps N MiB more in R's memory (raw() zeroes it: resident).
GROWING_APP = '''
hoard <- list()

#* @get /echo
function() "ok"

#* @param mb MiB to keep
#* @get /grow
function(mb) {
  hoard[[length(hoard) + 1]] <<- raw(as.integer(mb) * 2^20)
  length(hoard)
}
'''

CLIENTS = 4  # requests in flight at once: two per worker
RECYCLES = 4  # two per worker
GUARD = 180  # seconds: a guard against hanging, not a measure of speed


async def test_recycling_by_request_count_under_load_keeps_every_worker_online():
    config = config_for(workers=2, strategy="least-busy", max_requests=40)
    async with run_faucet(config) as faucet, faucet.client() as client:
        (mount,) = faucet.proxy_mounts
        dispatcher = mount.dispatcher
        size = len(dispatcher.backends)
        pids: set[int] = set()
        fewest_online = size
        statuses: list[int] = []
        done = trio.Event()

        def recycles() -> int:
            return sum(b.recycles for b in dispatcher.backends)

        async def watch() -> None:
            nonlocal fewest_online
            while not done.is_set():
                pids.update(b.pid for b in mount.every_backend() if b.pid is not None)
                fewest_online = min(fewest_online, sum(b.online for b in dispatcher.backends))
                with trio.move_on_after(0.05):  # a recycle's own changes wake it at once
                    await dispatcher.wait_changed()

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                for _ in range(CLIENTS):
                    nursery.start_soon(keep_asking, client, "/echo", statuses, done)
                while recycles() < RECYCLES or any(b.recycling for b in dispatcher.backends):
                    await dispatcher.wait_changed()
                await until(lambda: not mount.retired)  # the replaced ones drained
                done.set()
        assert statuses and set(statuses) == {200}
        assert fewest_online == size
        current = {b.pid for b in dispatcher.backends}
        assert len(pids - current) >= RECYCLES
        await until(lambda: not any(alive(pid) for pid in pids - current))
        health = (await client.get("/__faucet__/health")).json()
        assert {w["restarts"] for w in health["workers"]} == {0}
        assert sum(w["recycles"] for w in health["workers"]) >= RECYCLES
        assert [w["state"] for w in health["workers"]] == ["online"] * size


async def test_a_worker_over_max_worker_memory_is_replaced_without_a_failed_request(tmp_path):
    (tmp_path / "plumber.R").write_text(GROWING_APP)
    config = config_for(workers=1, dir=str(tmp_path), max_worker_memory="300M")
    async with run_faucet(config) as faucet, faucet.client() as client:
        (mount,) = faucet.proxy_mounts
        dispatcher = mount.dispatcher

        def serving() -> int | None:
            """The pid of the online worker in the pool's one slot (a replacement takes
            the slot of the worker it replaces)."""
            (backend,) = dispatcher.backends
            return backend.pid if backend.online else None

        first = serving()
        statuses: list[int] = []
        done = trio.Event()

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_asking, client, "/echo", statuses, done)
                assert (await client.get("/grow?mb=400")).status_code == 200
                while serving() in (first, None):  # until its replacement serves
                    await dispatcher.wait_changed()
                await until(lambda: not mount.retired and not alive(first))
                done.set()
        assert statuses and set(statuses) == {200}
        health = (await client.get("/__faucet__/health")).json()
        assert [(w["recycles"], w["restarts"]) for w in health["workers"]] == [(1, 0)]
