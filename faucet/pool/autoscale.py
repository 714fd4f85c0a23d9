"""What the ``rps`` strategy's pool should do next (pure: no trio, no I/O).

A pool of ``max_workers`` backends runs between ``min_workers`` of them and all. Every tick
the scaler (``scaler.py``) hands ``Autoscaler.decide`` a ``Sample`` of the pool and carries
out the ``Decision`` it returns.

Up, fast. The pool needs ``ceil(rate / max_rps)`` workers, the rate being the requests
that arrived over the last ``RATE_WINDOW`` seconds. A queue in the dispatcher that has not
shrunk over the last ``COOLDOWN`` seconds means the running workers do not keep up whatever
the rate says (slow requests): then ``ceil(queued / max_rps)`` more, at least one, but only
once no worker is still starting and ``COOLDOWN`` has passed since the last start, so that
a queue which the workers already starting (or just started) will drain does not start
every worker in the pool. Either way, never more than ``ceil(busy / busy_share)`` (at
least one), ``busy`` being the worker-seconds the workers spent with a request in flight
over the last ``RATE_WINDOW`` seconds: a pool grows only while its workers are busy at
least ``busy_share`` of their time, so that a clump of cheap requests (25 404s answered
in a few milliseconds each), which reads as a high rate for a second, does not start
workers that would have nothing to do (and keep them for ``scale_down_after``). Real
load fills the workers' time at once: one busy worker lets the pool grow to four, four
to sixteen. Several start at once, up to
``max_starting``: starting R is CPU-bound (~0.7 s of CPU for Plumber), so starting more
workers than there are CPUs only brings every one of them online later.

Down, slowly. The pool keeps as many workers as the most it needed at any tick of the last
``scale_down_after`` seconds (a stabilisation window, as Kubernetes' autoscaler keeps), so a
worker stops once the pool has not needed it for that long, however the dispatcher spread
the requests. The least recently busy go first. An online worker is drained: out of
routing, stopped once its requests have finished; taken back at once if the load returns
meanwhile.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

from attrs import frozen

RATE_WINDOW = 1.0  # seconds of arrivals the rate is measured over
COOLDOWN = 1.0  # seconds after a start before the queue may start another worker


class Phase(Enum):
    """Where a worker is in the pool's life; the value is what health shows for it."""

    STOPPED = "stopped (scaled down)"
    RUNNING = "running"  # its supervisor runs: starting, online or restarting
    DRAINING = "draining (scaled down)"  # out of routing until its requests finish
    STOPPING = "stopping (scaled down)"  # its process group is being stopped


@frozen
class Policy:
    """An autoscaled pool's bounds and settings (``max_rps``, ``min_workers``, ``workers``,
    ``scale_down_after``)."""

    max_rps: float
    min_workers: int
    max_workers: int
    scale_down_after: float = 30.0
    max_starting: int = 2  # workers starting at once at most: the CPUs faucet may use
    # The share of their time the workers must be busy for the pool to grow: it runs
    # at most ceil(busy worker-seconds per second / busy_share) workers.
    busy_share: float = 0.25


@frozen
class WorkerSample:
    """One backend as the scaler saw it."""

    online: bool
    inflight: int  # requests holding it
    sessions: int  # open WebSocket sessions
    served: int  # requests finished, ever
    incarnation: int  # bumped by its supervisor at every process start
    restarts: int  # bumped by its supervisor once a process has exited
    busy: float = 0.0  # seconds it has had a request in flight, ever

    @property
    def life(self) -> tuple[int, int]:
        """Changes whenever its process exits or a new one starts."""
        return self.incarnation, self.restarts


@frozen
class Sample:
    """The pool at one tick: the time, the requests waiting for a worker, every backend."""

    now: float
    queued: int
    workers: tuple[WorkerSample, ...]


@frozen
class Decision:
    """Backend indices: ``start`` a supervisor; ``resume`` routing to a draining worker;
    ``drain`` (out of routing); ``stop`` (cancel the supervisor, which stops the process
    group; call ``Autoscaler.exited`` once it has)."""

    start: tuple[int, ...] = ()
    resume: tuple[int, ...] = ()
    drain: tuple[int, ...] = ()
    stop: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.start or self.resume or self.drain or self.stop)


class History:
    """A value sampled now and then over the last ``window`` seconds, and what it was when
    the window began (the newest sample at or before its start)."""

    def __init__(self, window: float):
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()  # (time, value), oldest first

    def record(self, now: float, value: float) -> None:
        self._samples.append((now, value))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def then(self) -> float:
        """The value at the window's start (the oldest recorded, early on)."""
        return self._samples[0][1]


class RateMeter(History):
    """Events (or seconds of work) per second over the last ``window`` seconds, from a
    running total."""

    def rate(self) -> float:
        """Events since the window's start per second; while fewer than ``window`` seconds
        have been recorded, still divided by ``window`` (a first sample's few requests are
        no high rate)."""
        if not self._samples:
            return 0.0
        (first_time, first), (last_time, last) = self._samples[0], self._samples[-1]
        return max(0, last - first) / max(last_time - first_time, self.window)


class WindowMax:
    """The largest value recorded over the last ``window`` seconds (a monotonic deque:
    each value stays only while no later one is as large)."""

    def __init__(self, window: float):
        self.window = window
        self._items: deque[tuple[float, int]] = deque()

    def record(self, now: float, value: int) -> None:
        while self._items and self._items[-1][1] <= value:
            self._items.pop()
        self._items.append((now, value))
        while self._items[0][0] < now - self.window:
            self._items.popleft()

    def peak(self) -> int:
        return self._items[0][1] if self._items else 0


class Autoscaler:
    """The pool's phases and load history; ``decide`` once per tick."""

    def __init__(self, policy: Policy):
        self.policy = policy
        count = policy.max_workers
        self.phases = [Phase.STOPPED] * count
        self._arrivals = RateMeter(RATE_WINDOW)
        self._busy = RateMeter(RATE_WINDOW)  # the workers' busy seconds, summed
        self._queued = History(COOLDOWN)
        self._needed = WindowMax(policy.scale_down_after)
        self._last_start = -math.inf
        self._busy_at = [-math.inf] * count  # when each last had a request or session
        self._served = [0] * count
        self._drained_life = [(0, 0)] * count  # a draining worker's process, when drained

    @property
    def rate(self) -> float:
        """Requests per second that arrived over the last ``RATE_WINDOW`` seconds."""
        return self._arrivals.rate()

    @property
    def busy(self) -> float:
        """Worker-seconds of work per second over the last ``RATE_WINDOW`` seconds: how
        many workers the work kept busy."""
        return self._busy.rate()

    def running(self) -> list[int]:
        return [i for i, phase in enumerate(self.phases) if phase is Phase.RUNNING]

    def decide(self, sample: Sample) -> Decision:
        """What to do now; the phases move as if it were done."""
        self._observe(sample)
        running = self.running()
        starting = sum(not sample.workers[i].online for i in running)
        need = self._need(sample, len(running), starting)
        self._needed.record(sample.now, need)
        resume: list[int] = []
        start: list[int] = []
        drain: list[int] = []
        stop: list[int] = []
        if need > len(running):
            resume, start = self._grow(need - len(running), starting, sample)
        elif len(running) > (keep := self._needed.peak()):  # need is at least min_workers
            drain, stop = self._shrink(running, len(running) - keep, sample)
        drained, stopped = self._drained(sample, fresh=drain)
        return Decision(tuple(start), tuple(resume), tuple(drain + drained), tuple(stop + stopped))

    def exited(self, index: int) -> None:
        """The supervisor of a worker told to ``stop`` has finished: it may start again."""
        self.phases[index] = Phase.STOPPED

    def _observe(self, sample: Sample) -> None:
        arrived = sample.queued
        busy = 0.0
        for index, worker in enumerate(sample.workers):
            arrived += worker.served + worker.inflight
            busy += worker.busy
            if worker.served != self._served[index] or worker.inflight or worker.sessions:
                self._busy_at[index] = sample.now
            self._served[index] = worker.served
        self._arrivals.record(sample.now, arrived)
        self._busy.record(sample.now, busy)
        self._queued.record(sample.now, sample.queued)

    def _need(self, sample: Sample, running: int, starting: int) -> int:
        """The workers the load calls for now, no more than its work keeps busy, within
        the policy's bounds."""
        policy = self.policy
        need = math.ceil(round(self.rate / policy.max_rps, 6))  # 60.00000000000001 is 60
        if (sample.queued and sample.queued >= self._queued.then() and not starting
                and sample.now - self._last_start >= COOLDOWN):
            need = max(need, running + math.ceil(sample.queued / policy.max_rps))
        worth = max(1, math.ceil(round(self.busy / policy.busy_share, 6)))
        return min(max(min(need, worth), policy.min_workers), policy.max_workers)

    def _grow(self, count: int, starting: int,
              sample: Sample) -> tuple[list[int], list[int]]:
        """Take back draining workers first (warm, unless their process has exited since
        they were drained), then start stopped ones, lowest index first, while fewer than
        ``max_starting`` are starting. The rest, and workers still stopping, are started
        on later ticks."""
        resume = [i for i, phase in enumerate(self.phases) if phase is Phase.DRAINING
                  and sample.workers[i].life == self._drained_life[i]][:count]
        room = max(0, min(count - len(resume), self.policy.max_starting - starting))
        start = [i for i, phase in enumerate(self.phases) if phase is Phase.STOPPED][:room]
        for index in resume + start:
            self.phases[index] = Phase.RUNNING
            self._busy_at[index] = sample.now
        if start:
            self._last_start = sample.now
        return resume, start

    def _shrink(self, running: list[int], count: int,
                sample: Sample) -> tuple[list[int], list[int]]:
        """Workers not online (starting or restarting) go first and are stopped at once;
        then the least recently busy (the highest index of equals), drained."""
        chosen = sorted(running, key=lambda i: (sample.workers[i].online, self._busy_at[i], -i))
        drain, stop = [], []
        for index in chosen[:count]:
            if sample.workers[index].online:
                self._drain(index, sample)
                drain.append(index)
            else:
                self.phases[index] = Phase.STOPPING
                stop.append(index)
        return drain, stop

    def _drain(self, index: int, sample: Sample) -> None:
        self.phases[index] = Phase.DRAINING
        self._drained_life[index] = sample.workers[index].life

    def _drained(self, sample: Sample, fresh: list[int]) -> tuple[list[int], list[int]]:
        """Workers drained before this tick (not ``fresh``) to drain again (online: their
        supervisor restarted the process after a crash) and to stop (nothing in flight)."""
        again, done = [], []
        for index, phase in enumerate(self.phases):
            worker = sample.workers[index]
            if phase is not Phase.DRAINING or index in fresh:
                continue
            if worker.online:
                self._drain(index, sample)
                again.append(index)
            elif not (worker.inflight or worker.sessions):
                self.phases[index] = Phase.STOPPING
                done.append(index)
        return again, done
