"""One access-log line, one telemetry event and the metrics' counts per exchange, HTTP or
WebSocket."""

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
from faucet.telemetry.metrics import RequestMetrics
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
    # perf_counter when the request arrived (within microseconds: the draft is made as
    # soon as its route is known), for the metrics' durations and queue wait.
    arrived: float = attrs.Factory(time.perf_counter)


def record_exchange(recorder: Recorder, draft: EventDraft, status: int,
                    backend: Backend | None, since: float,
                    metrics: RequestMetrics | None = None) -> None:
    """Log the exchange, hand its event to telemetry and count it in ``metrics``;
    ``since`` is the perf_counter when the exchange's clock started (telemetry's
    ``elapsed``: when a worker was chosen, or the arrival for faucet's own answers)."""
    now = time.perf_counter()
    elapsed = (now - since) * 1000
    request = draft.request
    if metrics is not None:
        metrics.exchange(draft.route or "", str(backend.worker_id) if backend else "",
                         request.method, status, now - draft.arrived,
                         since - draft.arrived if backend else None)
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
