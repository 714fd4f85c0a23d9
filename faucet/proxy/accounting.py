"""One access-log line and one telemetry event per exchange, HTTP or WebSocket."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import attrs
from attrs import define

from faucet.events import HttpEvent, uuid7
from faucet.http.request import Request
from faucet.logs import log_access
from faucet.pool.backend import Backend
from faucet.telemetry.recorder import Recorder


@define(slots=True)
class EventDraft:
    """What is known of an exchange before the response: its telemetry event's inputs."""

    request: Request
    path: bytes  # as the worker sees it
    ip: object
    user_agent: str | None
    route: str | None
    request_uuid: uuid.UUID = attrs.Factory(uuid7)


def record_exchange(recorder: Recorder, draft: EventDraft, status: int,
                    backend: Backend | None, since: float) -> None:
    """Log the exchange and hand its event to telemetry; ``since`` is the perf_counter
    when the exchange's clock started (telemetry's ``elapsed``)."""
    elapsed = (time.perf_counter() - since) * 1000
    request = draft.request
    http_version = "HTTP/" + request.http_version
    raw_path = request.raw_path.decode("latin-1")
    query = request.query.decode("latin-1")
    log_access(str(draft.ip) if draft.ip else "-", request.method,
               raw_path + "?" + query if query else raw_path, http_version, status,
               draft.user_agent, elapsed, backend.worker_id if backend else None,
               draft.route)
    if recorder.enabled:
        recorder.record(HttpEvent(
            request_uuid=draft.request_uuid,
            namespace=recorder.namespace,
            version=recorder.version,
            target=backend.target if backend else None,
            worker_route=draft.route,
            worker_id=backend.worker_id if backend else None,
            ip_addr=draft.ip,
            method=request.method,
            path=draft.path.decode("latin-1"),
            query_params=query or None,
            http_version=http_version,
            status=status,
            user_agent=draft.user_agent,
            elapsed=round(elapsed),
            time=datetime.now(UTC),
        ))
