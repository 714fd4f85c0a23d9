"""Handing requests to backends, waiting when none can take one.

The balancer's pure choices plus the waiting: requests wait on a ``trio.Event`` that
supervisors fire whenever a worker goes online or offline, and ``least-busy`` keeps one
bounded FIFO queue that is served as soon as any worker frees up (one M/G/k queue
instead of k separate queues in the workers' sockets). The caller owns the deadline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import trio
from attrs import define

from faucet.balancer import least_busy, next_online, sticky_index
from faucet.pool import Backend


class QueueFull(Exception):
    """least-busy's queue is at its bound; the proxy answers 503."""


@define(eq=False)
class _Waiter:
    event: trio.Event
    backend: Backend | None = None


class Dispatcher:
    """Chooses a backend for each request of one app and tracks requests in flight."""

    def __init__(self, backends: Sequence[Backend], strategy: str, *, max_inflight: int = 1,
                 max_queue: int = 1024, sticky_grace: float = 3.0):
        self.backends = list(backends)
        self.strategy = strategy
        self.sticky = strategy in ("ip-hash", "cookie-hash")
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.sticky_grace = sticky_grace
        self._next = 0
        self._changed = trio.Event()
        self._waiters: deque[_Waiter] = deque()

    def changed(self) -> None:
        """A backend went online or offline: wake whoever waits for one."""
        event, self._changed = self._changed, trio.Event()
        event.set()
        self._serve_waiters()

    async def wait_changed(self) -> None:
        """Until the next time a backend goes online or offline."""
        await self._changed.wait()

    def any_online(self) -> bool:
        return any(b.online for b in self.backends)

    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self, key: int | None = None) -> tuple[Backend, bool]:
        """A backend for one request (its in-flight count already taken) and whether a
        sticky request was moved away from its own worker, which was down."""
        if self.strategy == "least-busy":
            return await self._acquire_least_busy(), False
        if self.sticky and key is not None:
            return await self._acquire_sticky(key)
        while (backend := next_online(self.backends, self._next)) is None:
            await self._changed.wait()
        self._next = backend.worker_id  # the index after this backend
        return self._take(backend), False

    def release(self, backend: Backend) -> None:
        backend.inflight -= 1
        backend.served += 1
        self._serve_waiters()

    def _take(self, backend: Backend) -> Backend:
        backend.inflight += 1
        return backend

    async def _acquire_sticky(self, key: int) -> tuple[Backend, bool]:
        index = sticky_index(key, len(self.backends))
        own = self.backends[index]
        if not own.online:
            # A restart takes about a second: give the worker holding the session a
            # short grace before moving the client elsewhere.
            with trio.move_on_after(self.sticky_grace):
                while not own.online:
                    await self._changed.wait()
        while (backend := next_online(self.backends, index)) is None:
            await self._changed.wait()
        return self._take(backend), backend is not own

    async def _acquire_least_busy(self) -> Backend:
        if not self._waiters:
            backend = least_busy(self.backends, self._next, self.max_inflight)
            if backend is not None:
                self._next = backend.worker_id
                return self._take(backend)
        if len(self._waiters) >= self.max_queue:
            raise QueueFull(f"{len(self._waiters)} requests already wait for a worker")
        waiter = _Waiter(trio.Event())
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.backend is not None:
                self.release(waiter.backend)  # handed over as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise
        assert waiter.backend is not None
        return waiter.backend

    def _serve_waiters(self) -> None:
        """Hand freed capacity to the longest-waiting requests, first come first served."""
        while self._waiters:
            backend = least_busy(self.backends, self._next, self.max_inflight)
            if backend is None:
                return
            self._next = backend.worker_id
            waiter = self._waiters.popleft()
            waiter.backend = self._take(backend)
            waiter.event.set()
