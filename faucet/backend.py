"""The backends of one app and their live state (pure: no I/O, no trio)."""

from __future__ import annotations

from attrs import define, field


@define(eq=False)
class Backend:
    """One worker process as the balancer sees it. Mutated by its supervisor (online,
    pid, restarts) and by the dispatcher (in-flight count)."""

    worker_id: int  # 1-based, as FAUCET_WORKER_ID
    port: int
    route: str | None = None
    online: bool = False
    inflight: int = 0
    sessions: int = 0  # live WebSocket sessions (a Shiny session is one)
    slow_inflight: int = 0  # of those, requests not known to be quick (least-busy)
    served: int = 0
    restarts: int = 0
    pid: int | None = None
    # Bumped on every (re)start so pooled upstream connections to a dead process are dropped.
    generation: int = 0
    # Set by the autoscaler (rps) while the worker is not simply running:
    # "stopped (scaled down)", "draining (scaled down)"...
    phase: str | None = None
    # Its position in the app's list of backends (and in the proxy's upstream pools),
    # which the sticky hashes and round-robin count in.
    index: int = field(init=False)
    target: str = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.index = self.worker_id - 1
        self.target = f"Worker::{self.worker_id}"

    def state(self) -> dict:
        """The health endpoint's view of this worker."""
        return {
            "worker_id": self.worker_id,
            "target": self.target,
            "route": self.route,
            "online": self.online,
            "state": self.phase or ("online" if self.online else "offline"),
            "pid": self.pid,
            "port": self.port,
            "inflight": self.inflight,
            "sessions": self.sessions,
            "served": self.served,
            "restarts": self.restarts,
        }
