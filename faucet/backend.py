"""The backends of one app and their live state (pure: no I/O, no trio)."""

from __future__ import annotations

from enum import StrEnum

from attrs import define, field

from faucet.liveness import Watch


class Phase(StrEnum):
    """Where a worker is in its life, as the health endpoint shows it."""

    STARTING = "starting"  # spawned; not yet accepting connections
    ONLINE = "online"  # takes requests
    UNHEALTHY = "unhealthy"  # found hung: out of service, being stopped
    RESTARTING = "restarting"  # exited or stopped; waiting out the restart backoff


@define(eq=False)
class Backend:
    """One worker process as the balancer sees it. Mutated by its supervisor (phase,
    pid, restarts), by the dispatcher (in-flight count) and, through ``note_timeout``
    and ``note_answer``, by the proxy."""

    worker_id: int  # 1-based, as FAUCET_WORKER_ID
    port: int
    route: str | None = None
    online: bool = False  # phase is ONLINE; kept as a field for the balancer's hot path
    inflight: int = 0
    sessions: int = 0  # live WebSocket sessions (a Shiny session is one)
    slow_inflight: int = 0  # of those, requests not known to be quick (least-busy)
    served: int = 0
    restarts: int = 0
    pid: int | None = None
    # Bumped on every (re)start so pooled upstream connections to a dead process are dropped.
    generation: int = 0
    phase: Phase = Phase.STARTING
    last_failure: str | None = None  # why it last left service, kept after it returns
    # The running process's evidence of a hang, while its supervisor keeps a watch.
    watch: Watch | None = None
    # Set by the autoscaler (rps) while the worker is not simply running:
    # "stopped (scaled down)", "draining (scaled down)"...
    scaling: str | None = None
    # Its position in the app's list of backends (and in the proxy's upstream pools),
    # which the sticky hashes and round-robin count in.
    index: int = field(init=False)
    target: str = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.index = self.worker_id - 1
        self.target = f"Worker::{self.worker_id}"

    @property
    def acquired(self) -> int:
        """Requests ever handed to this backend (a request released counts as served)."""
        return self.served + self.inflight

    def enter(self, phase: Phase) -> bool:
        """Move to ``phase``; True when that changes whether it takes requests (then the
        dispatcher must hear of it)."""
        was_online = self.online
        self.phase = phase
        self.online = phase is Phase.ONLINE
        return self.online != was_online

    def note_timeout(self) -> None:
        """The proxy's report: a request got no answer within response_timeout."""
        if self.watch is not None:
            self.watch.timed_out()

    def note_answer(self) -> None:
        """The proxy's report: the worker answered a request (its response head came)."""
        if self.watch is not None:
            self.watch.answered()

    def state(self) -> dict:
        """The health endpoint's view of this worker."""
        return {
            "worker_id": self.worker_id,
            "target": self.target,
            "route": self.route,
            "online": self.online,
            "state": self.scaling or str(self.phase),
            "last_failure": self.last_failure,
            "pid": self.pid,
            "port": self.port,
            "inflight": self.inflight,
            "sessions": self.sessions,
            "served": self.served,
            "restarts": self.restarts,
        }
