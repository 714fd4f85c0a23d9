"""When a worker's process is due to be replaced (pure: no trio, no I/O).

R processes grow: caches, leaked environments, fragmented heaps. ``max_requests`` replaces
a worker's process after that many requests, plus a random ``0..max_requests_jitter``
drawn at each start (gunicorn's meaning), so that workers started together are not all
replaced together; ``max_worker_memory`` replaces it once its resident memory passes
that size. The supervisor (``workers.supervisor``) checks ``Limits.due`` now and then and
carries out the recycle through ``Backend.recycle``.
"""

from __future__ import annotations

import random

from attrs import frozen


@frozen
class RecyclePolicy:
    """The settings: 0 / None turns a limit off."""

    max_requests: int = 0
    max_requests_jitter: int = 0
    max_memory: int | None = None

    @property
    def enabled(self) -> bool:
        return self.max_requests > 0 or self.max_memory is not None

    def limits(self, rng: random.Random) -> Limits:
        """One process's limits, its jitter drawn once at its start."""
        requests = 0
        if self.max_requests > 0:
            requests = self.max_requests + rng.randint(0, self.max_requests_jitter)
        return Limits(requests, self.max_memory)


@frozen
class Limits:
    """What one process may serve and hold before it is replaced (0 / None: no limit)."""

    requests: int
    memory: int | None

    def due(self, served: int, resident: int | None) -> str | None:
        """Why the process is to be replaced now, or None. ``served``: requests it has
        finished; ``resident``: its resident bytes (None: unknown)."""
        if self.requests and served >= self.requests:
            return f"served {served} requests (max_requests {self.requests})"
        if self.memory is not None and resident is not None and resident > self.memory:
            return (f"resident memory {resident / 2**20:.0f} MiB is over max_worker_memory "
                    f"({self.memory / 2**20:.0f} MiB)")
        return None
