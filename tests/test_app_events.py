"""Structured app events: the marker-line parser and a worker's lifecycle events (pure)."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest

from faucet.events import Level, LogEvent
from faucet.workers.app_events import MalformedEvent, WorkerEvents, parse_line

NOW = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
EVENT_ID = "0190f7c2-1f2e-7d4a-9b1c-3e5f6a7b8c9d"
PARENT_ID = "0190f7c2-1f2e-7d4a-9b1c-000000000001"
WORKER = {"namespace": "ns", "version": "2.0", "worker_id": 3, "worker_route": "/api/"}


def marker(fields: dict) -> str:
    """The line the R package's log() writes: the marker, a space, the JSON."""
    return "{{ faucet_event }}: " + json.dumps(fields)


def r_fields(**changes) -> dict:
    """An event as R's JSON writer emits it: every scalar a one-element array."""
    fields = {"target": ["shiny"], "event_id": [EVENT_ID], "parent_event_id": [None],
              "event_type": ["log"], "message": ["user 7 logged in"], "level": ["Info"],
              "body": [None]}
    return fields | changes


def parse(line: str) -> LogEvent | None:
    return parse_line(line, now=NOW, **WORKER)


def test_an_r_package_line_becomes_an_event_stamped_with_its_worker():
    assert parse(marker(r_fields())) == LogEvent(
        namespace="ns", version="2.0", target="shiny", time=NOW,
        event_id=uuid.UUID(EVENT_ID), parent_event_id=None, level=Level.INFO,
        event_type="log", message="user 7 logged in", body=None,
        worker_route="/api/", worker_id=3,
    )  # fmt: skip


@pytest.mark.parametrize(("changes", "field", "expected"), [
    ({"level": "Warn"}, "level", Level.WARN),  # plain scalars, as the Rust server's tests
    ({"level": ["Error"]}, "level", Level.ERROR),
    ({"level": ["debug"]}, "level", Level.DEBUG),  # any case
    ({"level": ["TRACE"]}, "level", Level.TRACE),
    ({"parent_event_id": [PARENT_ID]}, "parent_event_id", uuid.UUID(PARENT_ID)),
    ({"parent_event_id": None}, "parent_event_id", None),
    ({}, "parent_event_id", None),  # R's NA
    ({"body": {"user": [7], "roles": ["a", "b"]}}, "body", {"user": [7], "roles": ["a", "b"]}),
    ({"body": [1, 2]}, "body", [1, 2]),
    ({"body": None}, "body", None),
    ({"target": "payments", "event_type": "audit"}, "target", "payments"),
    ({"message": ["línea — ünïcode"]}, "message", "línea — ünïcode"),
])  # fmt: skip
def test_fields_as_scalars_or_one_element_arrays(changes, field, expected):
    assert getattr(parse(marker(r_fields(**changes))), field) == expected


def test_a_missing_body_is_null():
    fields = r_fields()
    del fields["body"]
    assert parse(marker(fields)).body is None


@pytest.mark.parametrize("line", [
    "",
    "Running plumber API at http://127.0.0.1:8000",
    " {{ faucet_event }}: {}",  # the marker must start the line
    "{{faucet_event}}: {}",
    "Warning: {{ faucet_event }}: {}",
])  # fmt: skip
def test_lines_without_the_marker_are_plain_output(line):
    assert parse(line) is None


@pytest.mark.parametrize(("line", "reason"), [
    ("{{ faucet_event }}:", "not JSON"),
    ("{{ faucet_event }}: {not json", "not JSON"),
    ("{{ faucet_event }}: " + "[" * 100_000, "not JSON"),  # nesting deeper than json allows
    ("{{ faucet_event }}: [1, 2]", "expected a JSON object, got list"),
    ("{{ faucet_event }}: \"text\"", "expected a JSON object, got str"),
    (marker(r_fields(level=["Loud"])), "level: 'Loud' is not one of Error, Warn, Info"),
    (marker(r_fields(level=[1])), "level: expected a string, got 1"),
    (marker(r_fields(event_id=["not-a-uuid"])), 'event_id: expected a UUID, got "not-a-uuid"'),
    (marker(r_fields(event_id=[None])), "event_id: expected a UUID, got null"),
    (marker(r_fields(event_id=[7])), "event_id: expected a UUID, got 7"),
    (marker(r_fields(parent_event_id=["x"])), "parent_event_id: expected a UUID"),
    (marker(r_fields(message=["a", "b"])), "message: expected one value, got 2"),
    (marker(r_fields(message=[])), "message: expected one value, got 0"),
    (marker(r_fields(message={"a": 1})), "message: expected a string"),
    (marker({"event_id": EVENT_ID}), "target is missing"),
])  # fmt: skip
def test_malformed_marker_lines_raise_malformed_event_only(line, reason):
    with pytest.raises(MalformedEvent) as caught:
        parse(line)
    assert str(caught.value).startswith(reason)


class Recorded(list):
    def types(self) -> list[str]:
        return [event.event_type for event in self]


def worker_events(recorded: Recorded) -> WorkerEvents:
    return WorkerEvents(recorded.append, clock=lambda: NOW, **WORKER)


def test_output_records_event_lines_and_hands_back_the_rest():
    recorded = Recorded()
    events = worker_events(recorded)
    assert events.output(marker(r_fields())) is True
    assert events.output("plain") is False
    assert events.output("{{ faucet_event }}: {broken") is False  # logged as a plain line
    assert [event.message for event in recorded] == ["user 7 logged in"]


def test_a_worker_life_is_recorded_with_each_step_pointing_at_its_start():
    recorded = Recorded()
    events = worker_events(recorded)
    events.started(["Rscript", "-e", "x"], pid=41)
    events.online(port=8001, pid=41)
    events.exited("exit status 3", 3, 12.3456, ["last words"])
    events.restarting(0.5, restarts=1)
    events.started(["Rscript", "-e", "x"], pid=42)
    assert recorded.types() == ["worker_start", "worker_online", "worker_exit",
                                "worker_restart", "worker_start"]
    first, online, exit_, restart, second = recorded
    assert {e.target for e in recorded} == {"faucet"}
    assert {(e.namespace, e.version, e.worker_id, e.worker_route) for e in recorded} == {
        ("ns", "2.0", 3, "/api/")}
    assert len({e.event_id for e in recorded}) == 5
    assert first.parent_event_id is None and second.parent_event_id is None
    assert {e.parent_event_id for e in (online, exit_, restart)} == {first.event_id}
    assert first.body == {"argv": ["Rscript", "-e", "x"], "pid": 41}
    assert (online.level, online.body) == (Level.INFO, {"port": 8001, "pid": 41})
    assert (exit_.level, exit_.message) == (Level.ERROR, "exited (exit status 3) after 12.3s")
    assert exit_.body == {"status": "exit status 3", "returncode": 3, "uptime": 12.346,
                          "stderr_tail": ["last words"]}
    assert restart.body == {"delay": 0.5, "restarts": 1}


def test_a_recycle_is_recorded_under_its_process_start():
    recorded = Recorded()
    events = worker_events(recorded)
    events.started(["Rscript"], pid=41)
    events.recycled("served 100 requests (max_requests 100)", recycles=2)
    start, recycle = recorded
    assert (recycle.event_type, recycle.level, recycle.parent_event_id) == (
        "worker_recycle", Level.INFO, start.event_id)
    assert recycle.message == "recycling: served 100 requests (max_requests 100)"
    assert recycle.body == {"reason": "served 100 requests (max_requests 100)", "recycles": 2}


def test_log_event_json_carries_its_type():
    event = parse(marker(r_fields(body={"k": [1]})))
    assert json.loads(event.to_json()) == {
        "type": "log", "namespace": "ns", "version": "2.0", "target": "shiny",
        "time": "2024-05-01T12:00:00+00:00", "event_id": EVENT_ID, "parent_event_id": None,
        "level": "info", "event_type": "log", "message": "user 7 logged in",
        "body": {"k": [1]}, "worker_route": "/api/", "worker_id": 3,
    }  # fmt: skip
