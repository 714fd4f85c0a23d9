"""One worker as the pool sees it: its state machine and its counters (pure: no I/O, no trio).

A worker's state is two things that change for different reasons:

- its process's ``phase`` (STOPPED, STARTING, ONLINE, UNHEALTHY, RESTARTING, STOPPING),
  moved by whoever runs the process (the supervisor, and the scaler that stops one);
- ``held``: why it is kept out of routing on purpose (scaled down, a reload, a recycle),
  which outlives a restart of its process: a worker drained while its process restarts
  stays drained once the new process is online.

A recycle replaces the worker with its ``successor`` (a new process on a port of its own,
the counters carried on): ``recycle`` marks it due and it serves on until the successor
is online and takes its place; then it is drained (``RECYCLED``) and stopped.

It takes requests (``online``) only when its process is ONLINE and nothing holds it.
Every change goes through a method here, which checks the transition is one the life of
a worker allows (``IllegalTransition`` otherwise: a bug in the caller) and tells the
backend's ``on_change`` listener (the dispatcher) whenever ``online`` flips, and its
``on_event`` listener (the dashboard's worker history, if any) of every change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from attrs import define, field

from faucet.pool.liveness import Watch


class Phase(StrEnum):
    """Where a worker's process is in its life, as the health endpoint shows it."""

    STOPPED = "stopped"  # no process: not started yet, or stopped by its pool
    STARTING = "starting"  # spawned; not yet accepting connections
    ONLINE = "online"  # accepting connections
    UNHEALTHY = "unhealthy"  # found hung: being stopped, a restart follows
    RESTARTING = "restarting"  # exited; waiting out the restart backoff
    STOPPING = "stopping"  # its process group is being stopped on purpose


_ALIVE = frozenset({Phase.STARTING, Phase.ONLINE, Phase.UNHEALTHY})
# The phases each change may start from.
_FROM = {
    "spawned": frozenset({Phase.STOPPED, Phase.RESTARTING}),
    "ready": frozenset({Phase.STARTING}),
    "condemned": frozenset({Phase.STARTING, Phase.ONLINE}),
    "exited": _ALIVE | {Phase.STOPPING},
    "stopping": _ALIVE | {Phase.RESTARTING, Phase.STOPPED},
}


RECYCLED = "recycled"  # why a replaced worker is held while it drains


class IllegalTransition(RuntimeError):
    """A change the life of a worker does not allow (a bug in faucet, not in the app)."""


@define(eq=False)
class Backend:
    """One worker process. Its state and counters change only through the methods below;
    everyone else reads them."""

    worker_id: int  # 1-based, as FAUCET_WORKER_ID
    port: int
    route: str | None = None
    # The deploy this worker serves: 0 from start-up, one more for each reload that
    # replaces its route's workers.
    generation: int = 0
    on_change: Callable[[], None] = field(default=lambda: None, repr=False)
    # Told ``(backend, change, detail)`` after each change of the process's life or of
    # routing: spawned, online, unhealthy, exited, restarting, stopping, stopped, drained,
    # resumed, recycled (``detail``: the reason, where there is one).
    on_event: Callable[[Backend, str, str | None], None] | None = field(default=None,
                                                                         repr=False)
    # Seconds, for the time it is busy (any monotonic clock: only differences count).
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    # -- state (read-only outside this class) --
    phase: Phase = field(default=Phase.STOPPED, init=False)
    held: str | None = field(default=None, init=False)  # why it is drained, if it is
    # ``phase is ONLINE and held is None``, kept as a field for the balancer's hot path.
    online: bool = field(default=False, init=False)
    pid: int | None = field(default=None, init=False)
    # Bumped at every process start, so pooled upstream connections to a dead process
    # are dropped.
    incarnation: int = field(default=0, init=False)
    # Why its process is due for replacement (its successor is starting), if it is.
    recycling: str | None = field(default=None, init=False)
    # That successor, once made: health shows it while it starts (or fails to).
    replacement: Backend | None = field(default=None, init=False, repr=False)
    # Told after each request it finishes (its supervisor checks max_requests then).
    on_served: Callable[[], None] | None = field(default=None, init=False, repr=False)
    restarts: int = field(default=0, init=False)
    recycles: int = field(default=0, init=False)  # processes replaced on purpose
    last_failure: str | None = field(default=None, init=False)  # kept after it returns
    last_output: str | None = field(default=None, init=False)  # its stderr's last line
    # Exits in a row before accepting connections (an app that cannot start).
    failed_starts: int = field(default=0, init=False)
    # The running process's evidence of a hang, while its supervisor keeps a watch.
    watch: Watch | None = field(default=None, init=False)
    # -- counters --
    inflight: int = field(default=0, init=False)
    slow_inflight: int = field(default=0, init=False)  # not known to be quick (least-busy)
    served: int = field(default=0, init=False)
    sessions: int = field(default=0, init=False)  # live WebSocket sessions, Shiny's included
    # Seconds with at least one request in flight, up to the last time none was left
    # (``busy_seconds`` adds the current stretch): the work the rps scaler weighs.
    busy_until_idle: float = field(default=0.0, init=False)
    busy_since: float = field(default=0.0, init=False)  # when the current stretch began
    # Its position in the app's list of backends (and in the proxy's upstream pools),
    # which the sticky hashes and round-robin count in.
    index: int = field(init=False)
    target: str = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.index = self.worker_id - 1
        self.target = f"Worker::{self.worker_id}"

    # ------------------------------------------------------------ the process's life

    def spawned(self, pid: int, watch: Watch | None = None) -> None:
        """A new process runs (not yet accepting connections)."""
        self._move("spawned", Phase.STARTING)
        self.pid = pid
        self.incarnation += 1
        self.watch = watch
        self._tell("spawned", None)

    def ready(self) -> None:
        """The process accepts connections: online, unless something holds it."""
        self.failed_starts = 0
        self._move("ready", Phase.ONLINE)
        self._tell("online", None)

    def recycle(self, reason: str) -> None:
        """Its process is due for replacement (``reason``: the limit it reached): it
        serves on while its ``successor`` starts. Only an online worker nothing holds,
        not already due, is recycled."""
        if self.phase is not Phase.ONLINE or self.held is not None or self.recycling:
            raise IllegalTransition(f"{self.target}: recycle while {self.status}")
        self.recycling = reason
        self.recycles += 1
        self._tell("recycled", reason)

    def successor(self, port: int) -> Backend:
        """The worker that replaces this one once it is due: the same place (worker id,
        route, generation, listeners), a port of its own (this process still listens on
        its own), the counters carried on; no process yet."""
        if not self.recycling:
            raise IllegalTransition(f"{self.target}: a successor while not recycling")
        new = Backend(self.worker_id, port, self.route, self.generation,
                      on_event=self.on_event, clock=self.clock)
        new.incarnation, new.restarts, new.recycles = (self.incarnation, self.restarts,
                                                       self.recycles)
        new.served, new.busy_until_idle = self.served, self.busy_seconds()
        new.last_failure, new.last_output = self.last_failure, self.last_output
        self.replacement = new
        return new

    def condemned(self, reason: str) -> None:
        """Found hung: out of routing while its process is stopped."""
        self._move("condemned", Phase.UNHEALTHY)
        self.last_failure = reason
        self._tell("unhealthy", reason)

    def exited(self, failure: str | None, last_output: str | None = None) -> None:
        """The process is gone. Unless it was being stopped on purpose, a restart follows
        (``failure``: why it ended, unless a verdict already says; ``last_output``: its
        last line on stderr, such as R's error)."""
        if self.phase is not Phase.STOPPING:
            if self.phase is Phase.STARTING:
                self.failed_starts += 1
            if failure is not None and self.phase is not Phase.UNHEALTHY:
                self.last_failure = failure
                self.last_output = last_output
            self._move("exited", Phase.RESTARTING)
            self._tell("exited", failure)
        self.watch = None

    def restarting(self) -> None:
        """The exit has been reported: one more restart."""
        self.restarts += 1
        self._tell("restarting", None)

    def stopping(self, why: str) -> None:
        """Its process group is being stopped on purpose (``why``: shown in health)."""
        self.held = why
        self._move("stopping", Phase.STOPPING)
        self._tell("stopping", why)

    def stopped(self) -> None:
        """Stopped on purpose and gone: no process until it is started again."""
        self.phase = Phase.STOPPED
        self.pid = None
        self.watch = None
        self._settle()
        self._tell("stopped", self.held)

    # ------------------------------------------------------------ routing

    def drain(self, why: str) -> None:
        """Out of routing (its process goes on) until ``resume``; ``why`` shows in
        health. It stays drained across restarts of its process."""
        self.held = why
        self._settle()
        self._tell("drained", why)

    def resume(self) -> None:
        """Back into routing (once its process is online)."""
        self.held = None
        self._settle()
        self._tell("resumed", None)

    # ------------------------------------------------------------ counters

    def lease(self, slow: bool) -> None:
        """A request was handed to it (``slow``: not known to be quick)."""
        if self.inflight == 0:
            self.busy_since = self.clock()
        self.inflight += 1
        self.slow_inflight += slow

    def release(self, slow: bool) -> None:
        """A request handed to it is over."""
        self.inflight -= 1
        self.slow_inflight -= slow
        self.served += 1
        if self.inflight == 0:
            self.busy_until_idle += self.clock() - self.busy_since
        if self.on_served is not None:
            self.on_served()

    def busy_seconds(self) -> float:
        """Seconds it has had a request in flight, ever (requests overlapping count once)."""
        ongoing = self.clock() - self.busy_since if self.inflight else 0.0
        return self.busy_until_idle + ongoing

    def session_opened(self) -> None:
        """A WebSocket session (a Shiny session among them) now counts on this worker."""
        self.sessions += 1

    def session_closed(self) -> None:
        self.sessions -= 1

    @property
    def acquired(self) -> int:
        """Requests ever handed to this backend (a request released counts as served)."""
        return self.served + self.inflight

    def note_timeout(self) -> None:
        """The proxy's report: a request got no answer within response_timeout."""
        if self.watch is not None:
            self.watch.timed_out()

    def note_answer(self) -> None:
        """The proxy's report: the worker answered a request (its response head came)."""
        if self.watch is not None:
            self.watch.answered()

    # ------------------------------------------------------------ reading

    @property
    def status(self) -> str:
        """The state as people read it: ``online``, ``draining (scaled down)``,
        ``stopped (scaled down)``..."""
        if self.held is None:
            return str(self.phase)
        if self.phase in (Phase.STOPPING, Phase.STOPPED):
            return f"{self.phase} ({self.held})"
        return f"draining ({self.held})"

    def state(self) -> dict:
        """The health endpoint's view of this worker."""
        return {
            "worker_id": self.worker_id,
            "target": self.target,
            "route": self.route,
            "generation": self.generation,
            "online": self.online,
            "state": self.status,
            "last_failure": self.last_failure,
            "pid": self.pid,
            "port": self.port,
            "inflight": self.inflight,
            "sessions": self.sessions,
            "served": self.served,
            "restarts": self.restarts,
            "recycles": self.recycles,
            # while due: why, and how its replacement's start goes (a replacement that
            # keeps failing leaves this worker serving: the app's files broke since)
            "recycling": None if self.recycling is None else {
                "reason": self.recycling,
                "replacement": None if self.replacement is None else {
                    "state": self.replacement.status, "pid": self.replacement.pid,
                    "failed_starts": self.replacement.failed_starts,
                    "last_failure": self.replacement.last_failure,
                    "last_output": self.replacement.last_output},
            },
        }

    def _move(self, change: str, to: Phase) -> None:
        if self.phase not in _FROM[change]:
            raise IllegalTransition(f"{self.target}: {change} while {self.phase}")
        self.phase = to
        self._settle()

    def _tell(self, change: str, detail: str | None) -> None:
        if self.on_event is not None:
            self.on_event(self, change, detail)

    def _settle(self) -> None:
        online = self.phase is Phase.ONLINE and self.held is None
        if online != self.online:
            self.online = online
            self.on_change()


def failing_to_start(backends) -> bool:
    """Every worker's process has exited before it ever accepted a connection, and none
    is online: the app cannot start (a syntax error in plumber.R), so waiting for a
    worker is pointless."""
    started = [b for b in backends if b.phase is not Phase.STOPPED]
    return bool(started) and all(b.failed_starts and not b.online for b in started)
