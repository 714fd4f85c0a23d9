"""Pure load-balancing decisions: which online backend takes a request. No I/O;
``dispatch.py`` does the waiting, ``sticky.py`` maps sticky clients to workers."""

from __future__ import annotations

from collections.abc import Sequence

from faucet.pool.backend import Backend


def next_online(backends: Sequence[Backend], start: int) -> Backend | None:
    """The first online backend at or after index ``start`` (wrapping)."""
    count = len(backends)
    for offset in range(count):
        backend = backends[(start + offset) % count]
        if backend.online:
            return backend
    return None


def least_loaded(backends: Sequence[Backend], start: int = 0,
                 limit: int | None = None) -> Backend | None:
    """The emptiest online backend, where a new sticky client or Shiny session goes: the
    fewest live sessions (below ``limit``, None: no limit), then the fewest requests in
    flight; ties go to the first at or after ``start``, so new clients from one address
    (a proxy in front) still spread over the workers."""
    best = None
    count = len(backends)
    for offset in range(count):
        backend = backends[(start + offset) % count]
        if (backend.online and (limit is None or backend.sessions < limit)
                and (best is None or (backend.sessions, backend.inflight)
                     < (best.sessions, best.inflight))):
            best = backend
    return best


def least_busy(backends: Sequence[Backend], start: int, limit: int) -> Backend | None:
    """The online backend with the fewest requests in flight, below ``limit``; ties go to
    the first one at or after ``start`` so idle workers share the load evenly."""
    best = None
    count = len(backends)
    for offset in range(count):
        backend = backends[(start + offset) % count]
        if backend.online and backend.inflight < limit:
            if best is None or backend.inflight < best.inflight:
                best = backend
                if backend.inflight == 0:
                    break
    return best


def pipeline_target(backends: Sequence[Backend], depth: int) -> Backend | None:
    """An online backend busy only with quick work (no slow request in flight) and
    fewer than ``depth`` requests: the next request can wait in its socket briefly."""
    best = None
    for backend in backends:
        if (backend.online and backend.slow_inflight == 0 and backend.inflight < depth
                and (best is None or backend.inflight < best.inflight)):
            best = backend
    return best


