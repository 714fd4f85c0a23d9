"""The health endpoint's answer (pure: state in, status and JSON body out)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from faucet.proxy.mount import Mount

HEALTH_PATH = "/__faucet__/health"
READY_PATH = "/__faucet__/ready"


# What only a trusted client sees (``health_details``): where the processes are, and the
# text of the latest errors (a sink's names its database host, port and role; a reload's
# names files). Others see that there was an error, and when (``last_error_at``).
_DETAILS = ("pid", "port")
_REPLACEMENT_DETAILS = ("pid", "last_output")  # its R error line too (it may name files)
_ERROR = "last_error"


def health(mounts: Sequence[Mount], telemetry, websockets: dict, sessions,
           reload: dict | None = None, details: bool = True) -> tuple[int, dict]:
    """200 while any worker is online, else 503; every worker's state (pids and ports
    only with ``details``), the requests waiting for one, WebSocket sessions and their
    memory, the Shiny sessions faucet holds, telemetry's statistics and the reloads'
    status (error texts only with ``details``)."""
    workers = [b.state() for m in mounts for b in m.every_backend()]
    telemetry = attrs.asdict(telemetry)
    reload = dict(reload or {})
    if not details:
        workers = [_public(w) for w in workers]
        for part in (telemetry, reload):
            if part.get(_ERROR) is not None:
                part[_ERROR] = "hidden (health_details)"
    online = sum(w["online"] for w in workers)
    body = {"status": "ok" if online else "unavailable", "online": online,
            "workers": workers,
            "queued": sum(g.dispatcher.queued() for m in mounts for g in (m.live, *m.retired)),
            "websockets": websockets, "sessions": attrs.asdict(sessions),
            "telemetry": telemetry, "reload": reload}
    return (200 if online else 503), body


def _public(worker: dict) -> dict:
    """A worker's state without where its processes are (its replacement's included, and
    the replacement's last output line)."""
    out = {k: v for k, v in worker.items() if k not in _DETAILS}
    recycling = out.get("recycling")
    if recycling and recycling["replacement"]:
        replacement = {k: v for k, v in recycling["replacement"].items()
                       if k not in _REPLACEMENT_DETAILS}
        out["recycling"] = {**recycling, "replacement": replacement}
    return out


def readiness(mounts: Sequence[Mount], draining: bool) -> tuple[int, dict]:
    """Whether faucet should get traffic (health says whether it is alive): 503 once a
    shutdown has begun, or while no worker of some app is online."""
    if draining:
        return 503, {"ready": False, "why": "shutting down"}
    waiting = [m.route or "app" for m in mounts if not any(b.online for b in m.backends)]
    if waiting:
        return 503, {"ready": False, "why": f"no worker online for {', '.join(waiting)}"}
    return 200, {"ready": True}
