"""Handing requests to backends, waiting when none can take one.

The balancer's pure choices plus the waiting: requests wait on a ``trio.Event`` that
supervisors fire whenever a worker goes online or offline, and ``least-busy`` keeps one
bounded queue inside faucet that is served as soon as any worker frees up (one M/G/k
queue instead of k separate queues in the workers' sockets). The caller owns the deadline.

least-busy also learns how long each job (request path) keeps a worker, as a moving
average, and uses it twice. While both quick jobs (under ``QUICK_JOB``) and slow or
unknown ones wait, the two kinds share the workers' time equally: a quick request waits
for at most about one slow job instead of all of them (most requests are quick, so the
mean wait drops), and slow requests still get half the time, so none starves. The time
each kind was given is remembered (up to ``SHARE_MEMORY``) also while only one kind
waits: after a slow job, quick ones keep their turns until they have had as much. And a
worker whose requests in flight are all known to be quick may take one more quick one,
which waits in R's socket for milliseconds: R does not idle while faucet hands it the
next request, and nothing ever queues behind a slow request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import trio
from attrs import define

from faucet.config.strategy import Strategy
from faucet.pool.backend import Backend, Phase
from faucet.pool.balancer import (
    least_busy,
    least_loaded,
    next_online,
    pipeline_target,
)
from faucet.pool.sticky import sticky_index

QUICK_JOB = 0.02  # seconds: a job this quick may wait behind another quick one
MAX_JOBS = 4096  # distinct jobs whose durations are remembered (the rest count as slow)
_WEIGHT = 0.2  # of the newest duration in the moving average
UNKNOWN_JOB = 0.1  # seconds assumed for a job never timed, when sharing time
SHARE_MEMORY = 1.0  # seconds: the most worker time one kind may be owed by the other


class Lease(NamedTuple):
    """A backend given to one request; hand it back to ``Dispatcher.release``."""

    backend: Backend
    moved: bool  # a sticky client moved off its own worker, which was down
    slow: bool  # not known to be quick: nothing is pipelined behind it
    job: Hashable | None  # what the duration is learned for: the request path


class QueueFull(Exception):
    """least-busy's queue is at its bound; the proxy answers 503."""


class Retired(Exception):
    """A newer generation of the app's workers took over (a reload): ask its dispatcher."""


@define(eq=False)
class _Waiter:
    event: trio.Event
    slow: bool
    cost: float  # the job's expected seconds on a worker
    backend: Backend | None = None


class Dispatcher:
    """Chooses a backend for each request of one app and tracks requests in flight."""

    def __init__(self, backends: Sequence[Backend], strategy: Strategy, *, max_inflight: int = 1,
                 max_queue: int = 1024, sticky_grace: float = 3.0):
        self.backends = list(backends)
        self.strategy = strategy
        self.sticky = strategy.sticky
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.sticky_grace = sticky_grace
        self._next = 0  # where the next search starts: after the backend chosen last
        self._changed = trio.Event()
        # Waiting requests, quick jobs apart, and the worker seconds each kind was given
        # lately, less what both were given (see the module docstring).
        self._quick_waiters: deque[_Waiter] = deque()
        self._slow_waiters: deque[_Waiter] = deque()
        self._given = {False: 0.0, True: 0.0}  # keyed by "slow"
        self._durations: dict[Hashable, float] = {}
        self.retired = False
        for backend in self.backends:  # each tells of its own changes (faucet.backend)
            backend.on_change = self.changed
            backend.clock = trio.current_time  # busy time on the clock the scaler reads

    def changed(self) -> None:
        """A backend went online or offline: wake whoever waits for one."""
        event, self._changed = self._changed, trio.Event()
        event.set()
        self._serve_waiters()

    def retire(self) -> None:
        """A newer generation serves the app (a reload): every request waiting here is
        woken with Retired, to wait there instead."""
        self.retired = True
        for waiter in (*self._quick_waiters, *self._slow_waiters):
            waiter.event.set()  # with no backend: Retired
        self._quick_waiters.clear()
        self._slow_waiters.clear()
        self.changed()

    def replace(self, new: Backend) -> Dispatcher:
        """``new`` (a recycled worker's successor, online) takes the place of the backend
        at its index; the old one comes back in a retired dispatcher of its own, where a
        Shiny session's requests still reach it until it has drained."""
        old = self.backends[new.index]
        self.backends[new.index] = new
        new.on_change, new.clock = self.changed, trio.current_time
        leaving = Dispatcher([old], self.strategy, max_inflight=self.max_inflight,
                             max_queue=self.max_queue, sticky_grace=self.sticky_grace)
        leaving.retired = True
        self.changed()
        return leaving

    async def wait_changed(self) -> None:
        """Until the next time a backend goes online or offline."""
        await self._changed.wait()

    def queued(self) -> int:
        return len(self._quick_waiters) + len(self._slow_waiters)

    async def acquire(self, key: int | None = None, job: Hashable | None = None) -> Lease:
        """A backend for one request, its in-flight slot already taken."""
        lease = self.try_acquire(key, job)
        if lease is not None:
            return lease
        slow = not self.known_quick(job)
        if self.strategy.queues:
            return Lease(await self._wait_in_queue(slow, job), False, slow, job)
        if self.sticky and key is not None:
            backend, moved = await self._acquire_sticky(key)
            return Lease(self._take(backend, slow), moved, slow, job)
        while lease is None:  # round-robin with no worker online
            await self._wait_changed()
            lease = self.try_acquire(key, job)
        return lease

    def try_acquire(self, key: int | None = None, job: Hashable | None = None) -> Lease | None:
        """``acquire`` when it need not wait (most requests), else None: the caller then
        awaits ``acquire`` under its deadline."""
        slow = not self.known_quick(job)
        if self.strategy.queues:
            backend = None if self.queued() else self._slot(slow)
        elif self.sticky and key is not None:
            backend = self.sticky_backend(key)
            backend = backend if backend.online else None
        else:  # round-robin, or a sticky client's first request: place it by load
            place = least_loaded if self.sticky else next_online
            backend = place(self.backends, self._next)
            if backend is not None:
                self._next = backend.index + 1
        return None if backend is None else Lease(self._take(backend, slow), False, slow, job)

    def try_acquire_on(self, backend: Backend, job: Hashable | None = None) -> Lease | None:
        """A lease on one given backend (a Shiny session's own worker, or the one it is
        placed on), whatever the strategy, drained or not (a drained worker still serves
        the sessions it holds); None while its process is not online."""
        if backend.phase is not Phase.ONLINE:
            return None
        slow = not self.known_quick(job)
        return Lease(self._take(backend, slow), False, slow, job)

    def release(self, lease: Lease, seconds: float | None = None) -> None:
        """Give the slot back; ``seconds`` the worker spent on the job, when it finished."""
        lease.backend.release(lease.slow)
        if seconds is not None and lease.job is not None:
            self._learn(lease.job, seconds)
        self._serve_waiters()

    def known_quick(self, job: Hashable | None) -> bool:
        average = self._durations.get(job) if job is not None else None
        return average is not None and average < QUICK_JOB

    def _learn(self, job: Hashable, seconds: float) -> None:
        average = self._durations.get(job)
        if average is not None:
            self._durations[job] = average + _WEIGHT * (seconds - average)
        elif len(self._durations) < MAX_JOBS:
            self._durations[job] = seconds

    def _take(self, backend: Backend, slow: bool) -> Backend:
        backend.lease(slow)
        return backend

    def sticky_backend(self, key: int) -> Backend:
        """The backend a sticky key maps to, online or not."""
        return self.backends[sticky_index(key, len(self.backends))]

    async def _acquire_sticky(self, key: int) -> tuple[Backend, bool]:
        own = self.sticky_backend(key)
        index = own.index
        if not own.online:
            # A restart takes about a second: give the worker holding the session a
            # short grace before moving the client elsewhere.
            with trio.move_on_after(self.sticky_grace):
                while not own.online:
                    await self._wait_changed()
        while (backend := next_online(self.backends, index)) is None:
            await self._wait_changed()
        return backend, backend is not own

    def _slot(self, slow: bool) -> Backend | None:
        """An idle worker; for a quick job also one busy with quick work only. A slow job
        is never pipelined: R may read pipelined requests in any order, so a slow one
        could end up in front of the quick job it was meant to follow."""
        backend = least_busy(self.backends, self._next, self.max_inflight)
        if backend is None and not slow:
            backend = pipeline_target(self.backends, self.max_inflight + 1)
        if backend is not None:
            self._next = backend.index + 1
        return backend

    async def _wait_in_queue(self, slow: bool, job: Hashable | None) -> Backend:
        """least-busy when ``try_acquire`` found no slot: wait in the queue for one."""
        if self.queued() >= self.max_queue:
            raise QueueFull(f"{self.queued()} requests already wait for a worker")
        waiter = _Waiter(trio.Event(), slow, self._durations.get(job, UNKNOWN_JOB))
        queue = self._slow_waiters if slow else self._quick_waiters
        queue.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.backend is not None:  # handed over as we were cancelled
                self.release(Lease(waiter.backend, False, slow, None))
            else:
                queue.remove(waiter)
            raise
        if waiter.backend is None:
            raise Retired()
        return waiter.backend

    async def _wait_changed(self) -> None:
        await self._changed.wait()
        if self.retired:
            raise Retired()

    def _serve_waiters(self) -> None:
        """Hand freed capacity to waiting requests (see the module docstring for whom)."""
        while self._quick_waiters or self._slow_waiters:
            idle = least_busy(self.backends, self._next, self.max_inflight) is not None
            if not idle and not (self._quick_turn() and pipeline_target(
                    self.backends, self.max_inflight + 1)):
                return
            waiter = self._next_waiter(quick_only=not idle)
            waiter.backend = self._take(self._slot(waiter.slow), waiter.slow)
            waiter.event.set()

    def _quick_turn(self) -> bool:
        """A quick request waits, and slow ones have not had less time than quick ones
        (else pipelining quick work would keep the worker from ever being idle for them)."""
        return bool(self._quick_waiters) and (
            not self._slow_waiters or self._given[False] <= self._given[True])

    def _next_waiter(self, quick_only: bool) -> _Waiter:
        quick, slow, given = self._quick_waiters, self._slow_waiters, self._given
        if quick_only or not slow:
            waiter = quick.popleft()
        elif not quick:
            waiter = slow.popleft()
        else:  # the kind given less time goes
            waiter = (slow if given[True] < given[False] else quick).popleft()
        # The difference is remembered while one queue is empty (in a closed loop that is
        # between nearly every two requests), up to SHARE_MEMORY.
        given[waiter.slow] += waiter.cost
        low = min(given.values())
        given[False] = min(given[False] - low, SHARE_MEMORY)
        given[True] = min(given[True] - low, SHARE_MEMORY)
        return waiter
