"""One worker's place in a generation (its slot), for as long as its pool runs it.

The slot runs the worker's supervisor; when the worker's process is due for recycling
(max_requests, max_worker_memory) it surges, as a reload does for a whole generation:
the replacement (``Backend.successor``) starts on a port of its own while the worker
serves on; once the replacement is online it takes the worker's place (routing, its
upstream pool, its counters), and the old worker is retired as a generation of one
(faucet.lifecycle.retire): it finishes its requests and its Shiny sessions, then stops. The pool
never has fewer workers online than before the recycle.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio
from attrs import frozen

from faucet.pool.backend import RECYCLED, Backend
from faucet.proxy.mount import Generation, Mount

log = logging.getLogger("faucet")
# supervise(backend, recycled=..., task_status=...): one worker until cancelled.
Supervise = Callable[..., Awaitable[None]]
# retire(mount, leaving, stop): drain a retired generation, then stop() it.
Retire = Callable[[Mount, Generation, Callable[[], None]], Awaitable[None]]


def free_port() -> int:
    """A loopback port nobody listens on now; the worker keeps it across restarts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@frozen
class _Running:
    """One worker's supervisor in the slot: its cancel scope, and whether it is due."""

    backend: Backend
    scope: trio.CancelScope
    due: trio.Event


async def run_slot(mount: Mount, generation: Generation, supervise: Supervise,
                   retire: Retire, backend: Backend, *,
                   task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the worker in ``backend``'s slot, and each replacement after it, until
    cancelled (which stops every process the slot runs); started once the first
    process is spawned."""
    async with trio.open_nursery() as nursery:
        worker = await _start(nursery, supervise, backend)
        task_status.started()
        while True:
            await worker.due.wait()
            successor = await _start(nursery, supervise, worker.backend.successor(free_port()))
            await _online(successor.backend)
            leaving = generation.replace(successor.backend)
            worker.backend.drain(RECYCLED)
            mount.retired.append(leaving)
            log.info("%s: %s's replacement is online (pid %s); the old process (pid %s) "
                     "drains", mount.route or "app", worker.backend.target,
                     successor.backend.pid, worker.backend.pid)
            nursery.start_soon(retire, mount, leaving, worker.scope.cancel)
            worker = successor


async def _start(nursery: trio.Nursery, supervise: Supervise, backend: Backend) -> _Running:
    running = _Running(backend, trio.CancelScope(), trio.Event())

    async def run(task_status=trio.TASK_STATUS_IGNORED) -> None:
        with running.scope:
            await supervise(backend, recycled=running.due.set, task_status=task_status)

    await nursery.start(run)
    return running


async def _online(backend: Backend) -> None:
    """Until ``backend`` (not in any dispatcher yet: its flips are the slot's to hear)
    is online; its supervisor restarts it meanwhile if it exits."""
    while not backend.online:
        flipped = trio.Event()
        backend.on_change = flipped.set
        await flipped.wait()
