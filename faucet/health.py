"""The health endpoint's answer (pure: state in, status and JSON body out)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from faucet.mount import Mount

HEALTH_PATH = "/__faucet__/health"


def health(mounts: Sequence[Mount], telemetry, sessions) -> tuple[int, dict]:
    """200 while any worker is online, else 503; every worker's state, the requests
    waiting for one, and telemetry's and the Shiny sessions' statistics."""
    workers = [b.state() for m in mounts for b in m.backends]
    online = sum(w["online"] for w in workers)
    body = {"status": "ok" if online else "unavailable", "online": online,
            "workers": workers,
            "queued": sum(m.dispatcher.queued() for m in mounts),
            "telemetry": attrs.asdict(telemetry), "sessions": attrs.asdict(sessions)}
    return (200 if online else 503), body
