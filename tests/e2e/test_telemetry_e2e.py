"""Telemetry end to end: real Plumber workers behind faucet, events checked where they land
(PostgreSQL rows, the stdout sink's JSON lines, the example plugin's file).

In-process faucets (``run_faucet``) give access to the recorder and the sink registry;
subprocesses (``served``, ``run_to_exit``) give signals, exit codes and the real log output.
"""

from __future__ import annotations

import datetime
import json
import uuid

import httpx
import pytest
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from faucet.config.settings import TelemetryConfig
from faucet.events import COLUMNS
from faucet.lifecycle.deploy import free_port
from tests.forwarder import Forwarder
from tests.helpers import (
    PLUMBER,
    config_for,
    never_listening_rscript,
    registered_sink,
    run_faucet,
    run_to_exit,
    served,
    until,
    wait_for_line,
)
from tests.pg import query

SECRET = "pw-e2e-Secret-9921"
SELECT_ALL = f"SELECT {', '.join(COLUMNS)} FROM faucet_http_events"
UTC = datetime.UTC
# Each worker that comes up also records two log events: its start and online.
LIFE = 2


# --- helpers -----------------------------------------------------------------------------


def rows_of(dsn: str) -> list[dict]:
    """Every row of the test's faucet_http_events, as dicts (blocking)."""
    return [dict(zip(COLUMNS, row, strict=True)) for row in query(dsn, SELECT_ALL)]


async def db_rows(dsn: str) -> list[dict]:
    return await trio.to_thread.run_sync(rows_of, dsn)


def assert_uuid7(value) -> None:
    assert uuid.UUID(str(value)).version == 7


# --- every column, through real workers ----------------------------------------------------


# (method, path as sent, query, User-Agent, JSON body); each (method, path, query) unique.
REQUESTS = [
    ("GET", "/headers", "", "e2e-agent/1.0", None),
    ("GET", "/headers", "a=1&b=two%20words", None, None),
    ("GET", "/worker", "", "e2e-agent/2.0", None),
    ("GET", "/worker", "unused=1", None, None),
    ("GET", "/echo", "msg=h%C3%A9llo", "Mozilla/5.0 (X11; Linux x86_64)", None),
    ("POST", "/json", "", "e2e-agent/3.0", {"name": "faucet", "n": [1, 2]}),
    ("POST", "/json", "tag=x", None, {"n": 3}),
    ("GET", "/no/such%20path", "", "e2e-agent/4.0", None),
    ("GET", "/no/such%20path", "q=1", None, None),
    ("GET", "/sleep", "s=0.3", "e2e-agent/5.0", None),
]


async def test_each_request_is_one_row_with_every_column_right(pg_dsn):
    telemetry = TelemetryConfig(postgres_string=pg_dsn, namespace="shop-api",
                                flush_interval=0.05)
    began = datetime.datetime.now(UTC)
    sent = {}  # (method, path, query) -> what the client saw
    async with run_faucet(config_for(workers=2, telemetry=telemetry)) as faucet, \
            faucet.client() as client:
        del client.headers["user-agent"]  # httpx's default; some requests must have none
        for method, path, query_, agent, body in REQUESTS:
            started, clock = datetime.datetime.now(UTC), trio.current_time()
            response = await client.request(
                method, path + ("?" + query_ if query_ else ""), json=body,
                headers={"user-agent": agent} if agent else {})
            sent[method, path, query_] = {
                "agent": agent, "started": started, "status": response.status_code,
                "ms": (trio.current_time() - clock) * 1000, "body": response.json(),
            }
        # faucet's own health endpoint is not an event.
        assert (await client.get("/__faucet__/health")).status_code == 200
    ended = datetime.datetime.now(UTC)

    rows = await db_rows(pg_dsn)
    assert len(rows) == len(REQUESTS)
    by_key = {(r["method"], r["path"], r["query_params"] or ""): r for r in rows}
    assert by_key.keys() == sent.keys()
    assert len({r["request_uuid"] for r in rows}) == len(rows)
    statuses = {key: seen["status"] for key, seen in sent.items()}
    assert statuses == {
        key: {"/no/such%20path": 404}.get(key[1], 200) for key in statuses
    }, statuses
    for key, row in by_key.items():
        seen = sent[key]
        assert_uuid7(row["request_uuid"])
        assert row["namespace"] == "shop-api"
        assert row["version"] is None
        assert row["worker_route"] is None
        assert row["worker_id"] in (1, 2)
        assert row["target"] == f"Worker::{row['worker_id']}"
        assert str(row["ip_addr"]) == "127.0.0.1"
        assert row["query_params"] == (key[2] or None)
        assert row["http_version"] == "HTTP/1.1"
        assert row["status"] == seen["status"]
        assert row["user_agent"] == seen["agent"]
        assert row["time"].tzinfo is not None
        assert began <= seen["started"] <= row["time"] <= ended
        # Milliseconds, within what we saw: faucet stops its clock after its last write
        # returns, and the in-process client may run before that, hence the slack.
        assert 0 <= row["elapsed"] <= seen["ms"] + 25
        body = seen["body"]
        if key[1] == "/headers":
            # The worker got this very id, and the User-Agent recorded.
            assert str(row["request_uuid"]) == body["faucet-request-uuid"][0]
            assert row["user_agent"] == (body["user-agent"][0] if "user-agent" in body
                                         else None)
        if key[1] in ("/worker", "/sleep", "/json"):
            assert row["worker_id"] == int(body["worker"][0])
    # Round-robin over two workers: both appear.
    assert {r["worker_id"] for r in rows} == {1, 2}
    # elapsed is in milliseconds and `time` is when the response ended.
    sleep = by_key["GET", "/sleep", "s=0.3"]
    assert 300 <= sleep["elapsed"] < 3000
    slept_since = sleep["time"] - sent["GET", "/sleep", "s=0.3"]["started"]
    assert slept_since >= datetime.timedelta(seconds=0.3)


async def test_503_from_faucet_itself_is_an_event_without_a_worker(pg_dsn, tmp_path):
    telemetry = TelemetryConfig(postgres_string=pg_dsn, flush_interval=0.05)
    config = config_for(workers=1, rscript=never_listening_rscript(tmp_path),
                        worker_wait_timeout=0.5, telemetry=telemetry)
    async with run_faucet(config, wait=False) as faucet, faucet.client() as client:
        clock = trio.current_time()
        response = await client.get("/echo?msg=x", headers={"user-agent": "e2e"})
        waited_ms = (trio.current_time() - clock) * 1000
        assert response.status_code == 503
        assert "no worker was free" in response.text
    (row,) = await db_rows(pg_dsn)
    assert_uuid7(row["request_uuid"])
    assert (row["target"], row["worker_id"], row["worker_route"]) == (None, None, None)
    assert (row["method"], row["path"], row["query_params"]) == ("GET", "/echo", "msg=x")
    assert (row["status"], row["user_agent"]) == (503, "e2e")
    assert 500 <= row["elapsed"] <= waited_ms + 25  # it waited worker_wait_timeout for one


async def test_elapsed_runs_from_worker_choice_to_response_end(pg_dsn):
    """docs/telemetry.md: elapsed starts when a worker is chosen, so least-busy's wait in
    faucet's own queue is not in it (the worker's time and the response are)."""
    telemetry = TelemetryConfig(postgres_string=pg_dsn, flush_interval=0.05)
    config = config_for(workers=1, strategy="least-busy", telemetry=telemetry)
    seen_ms = {}
    async with run_faucet(config) as faucet, faucet.client() as client:
        backend = faucet.backends()[0]

        async def sleep(name: str) -> None:
            clock = trio.current_time()
            response = await client.get("/sleep", params={"s": 0.4, "n": name})
            assert response.status_code == 200
            seen_ms[name] = (trio.current_time() - clock) * 1000

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleep, "first")
            await until(lambda: backend.inflight == 1)
            nursery.start_soon(sleep, "second")  # waits in faucet's queue for the first
    elapsed = {r["query_params"]: r["elapsed"] for r in await db_rows(pg_dsn)}
    assert seen_ms["second"] >= 800
    assert elapsed["s=0.4&n=first"] >= 400
    assert 400 <= elapsed["s=0.4&n=second"] <= seen_ms["second"] - 300


# --- shutdown, outages, a full queue -------------------------------------------------------


def test_sigterm_writes_every_queued_event(pg_dsn):
    """A flush interval of 60 s: only the shutdown flush can write these events."""
    count = 40
    with served("start", "--dir", str(PLUMBER), "--workers", "1",
                "--telemetry-postgres-string", pg_dsn, "--telemetry-flush-interval", "60",
                "--telemetry-namespace", "sigterm", "--telemetry-version", "9.9.9",
                online=1) as faucet:
        with httpx.Client(base_url=faucet.url, timeout=30) as client:
            ids = [client.get("/headers").json()["faucet-request-uuid"][0]
                   for _ in range(count)]
            stats = client.get("/__faucet__/health").json()["telemetry"]
        assert stats["written"] == 0
        assert stats["queued"] + stats["pending"] == count + LIFE
        _out, err = faucet.stop()
        assert f"{count + LIFE} events written, 0 dropped, 0 failed" in err
    rows = rows_of(pg_dsn)
    assert sorted(str(r["request_uuid"]) for r in rows) == sorted(ids)
    assert {(r["namespace"], r["version"], r["status"]) for r in rows} == {
        ("sigterm", "9.9.9", 200)}


class Traffic:
    """Sequential requests until stopped; counts the answers by status."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.done = 0
        self.statuses: dict[int, int] = {}
        self.stopping = trio.Event()

    async def run(self) -> None:
        while not self.stopping.is_set():
            response = await self.client.get("/echo", params={"msg": str(self.done)})
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            self.done += 1


TERMINATE = """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE application_name = %s AND client_port = ANY(%s)"""


async def test_killed_connection_and_unreachable_database_lose_nothing(pg_dsn, pg_server):
    params = conninfo_to_dict(pg_dsn)
    forwarder = Forwarder(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
    async with trio.open_nursery() as outer:
        port = await outer.start(forwarder.serve)
        telemetry = TelemetryConfig(
            postgres_string=make_conninfo(pg_dsn, host="127.0.0.1", port=port),
            batch_size=20, flush_interval=0.02)
        async with run_faucet(config_for(workers=2, telemetry=telemetry)) as faucet, \
                faucet.client() as client:
            recorder = faucet.recorder
            traffic = Traffic(client)

            def written() -> int:
                return recorder.statistics().written

            async with trio.open_nursery() as nursery:
                nursery.start_soon(traffic.run)
                await until(lambda: written() >= 40)
                # 1. faucet's connection (application_name "faucet", set by the sink)
                # is terminated by the server in the middle of the traffic.
                killed = await trio.to_thread.run_sync(
                    query, pg_server, TERMINATE, ("faucet", list(forwarder.upstream_ports)))
                assert killed == [(True,)]
                after_kill = traffic.done
                await until(lambda: written() >= after_kill + 40)  # it reconnected
                # 2. the server becomes unreachable for a while.
                forwarder.cut()
                await until(lambda: not recorder.statistics().sink_available)
                written_at_cut, requests_at_cut = written(), traffic.done
                await until(lambda: traffic.done >= requests_at_cut + 60)
                assert written() == written_at_cut
                health = (await client.get("/__faucet__/health")).json()["telemetry"]
                assert health["sink_available"] is False
                assert health["queued"] + health["pending"] >= 60
                forwarder.restore()
                await until(lambda: recorder.statistics().sink_available)
                after_outage = traffic.done
                await until(lambda: written() >= after_outage + 20)
                traffic.stopping.set()
        outer.cancel_scope.cancel()
    stats = recorder.statistics()
    assert traffic.statuses == {200: traffic.done}
    assert (stats.written, stats.dropped, stats.failed) == (traffic.done + 2 * LIFE, 0, 0)
    rows = await db_rows(pg_dsn)
    assert len(rows) == len({r["request_uuid"] for r in rows}) == traffic.done
    assert sorted(int(r["query_params"].removeprefix("msg=")) for r in rows) == list(
        range(traffic.done))


class GatedSink:
    """A sink as slow as a test wants: every batch waits for ``gate``."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.events: list = []

    async def write_batch(self, events) -> None:
        await self.gate.wait()
        self.events.extend(events)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def gated_sink():
    sink = GatedSink()
    with registered_sink("gated-e2e", lambda options, config: sink):
        yield sink


async def test_full_queue_drops_and_counts_without_touching_requests(gated_sink):
    telemetry = TelemetryConfig(sink="gated-e2e", queue_size=4, batch_size=1,
                                flush_interval=0.01)
    async with run_faucet(config_for(workers=2, telemetry=telemetry)) as faucet, \
            faucet.client() as client:
        with trio.fail_after(20):  # the sink never finishes a batch: requests must not care
            statuses = [(await client.get("/echo", params={"msg": i})).status_code
                        for i in range(20)]
        assert statuses == [200] * 20
        health = (await client.get("/__faucet__/health")).json()["telemetry"]
        # The first event is in the batch the sink holds, four fill the queue, the rest drop.
        counters = ("queued", "pending", "written", "dropped", "failed", "sink_available")
        assert {key: health[key] for key in counters} == {
            "queued": 4, "pending": 1, "written": 0, "dropped": 15, "failed": 0,
            "sink_available": True}
        gated_sink.gate.set()
    stats = faucet.recorder.statistics()
    assert (stats.written, stats.dropped, stats.failed) == (5, 15, 0)
    assert [e.query_params for e in gated_sink.events] == [f"msg={i}" for i in range(5)]


# --- the other sinks, chosen by name -------------------------------------------------------


def check_json_events(lines: list[str], ids: list[str], namespace: str = "faucet",
                      version: str | None = None) -> None:
    events = [json.loads(line) for line in lines]
    life = [(e["event_type"], e["worker_id"]) for e in events if e["type"] == "log"]
    assert life == [("worker_start", 1), ("worker_online", 1)]
    events = [e for e in events if e["type"] == "http"]
    assert [e["request_uuid"] for e in events] == ids
    for event in events:
        assert list(event) == ["type", *COLUMNS]
        assert (event["namespace"], event["version"]) == (namespace, version)
        assert (event["target"], event["worker_id"], event["worker_route"]) == (
            "Worker::1", 1, None)
        assert (event["ip_addr"], event["method"], event["path"]) == (
            "127.0.0.1", "GET", "/headers")
        assert (event["http_version"], event["status"]) == ("HTTP/1.1", 200)
        assert isinstance(event["elapsed"], int)
        assert datetime.datetime.fromisoformat(event["time"]).tzinfo is not None
    assert [e["query_params"] for e in events] == [f"n={i}" for i in range(len(ids))]
    assert [e["user_agent"] for e in events] == ["e2e-json"] * len(ids)


def headers_requests(count: int, *args: str) -> tuple[list[str], str, str]:
    """Start faucet with ``args``, send ``count`` GET /headers?n=i, stop it: the request
    ids the worker received, and faucet's stdout and stderr."""
    with served("start", "--dir", str(PLUMBER), *args, online=1) as faucet:
        with httpx.Client(base_url=faucet.url, timeout=30,
                          headers={"user-agent": "e2e-json"}) as client:
            ids = [client.get("/headers", params={"n": i}).json()["faucet-request-uuid"][0]
                   for i in range(count)]
        out, err = faucet.stop()
    return ids, out, err


def test_stdout_sink_prints_one_json_line_per_request():
    ids, out, _err = headers_requests(6, "--workers", "1", "--telemetry-sink", "stdout",
                                      "--telemetry-version", "2.0")
    check_json_events(out.splitlines(), ids, version="2.0")


def test_plugin_sink_by_entry_point_name_with_options_from_faucet_toml(tmp_path):
    events = tmp_path / "events.jsonl"
    toml = tmp_path / "faucet.toml"
    toml.write_text(f'[telemetry]\nnamespace = "plugged"\n\n'
                    f'[telemetry.sink_options]\npath = "{events}"\n')
    ids, out, err = headers_requests(5, "--config", str(toml), "--workers", "1",
                                     "--telemetry-sink", "jsonfile",
                                     "--telemetry-flush-interval", "0.05")
    assert out == ""
    assert f"telemetry (jsonfile): {5 + LIFE} events written" in err
    check_json_events(events.read_text().splitlines(), ids, namespace="plugged")


# --- start-up refusals and secrets ---------------------------------------------------------


def test_unknown_sink_exits_2_naming_the_installed_ones():
    result = run_to_exit("start", "--dir", str(PLUMBER), "--host", f"127.0.0.1:{free_port()}",
                         "--telemetry-sink", "no-such-sink")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("faucet: telemetry.sink = 'no-such-sink': unknown sink; available: "
                           "postgres, stdout, null, ")
    assert "jsonfile" in line  # the example plugin, found through its entry point
    assert "faucet.sinks" in line


def test_malformed_connection_string_exits_2_before_any_worker():
    result = run_to_exit("start", "--dir", str(PLUMBER), "--host", f"127.0.0.1:{free_port()}",
                         "--telemetry-postgres-string", f"postgresql://u:{SECRET} x@localhost/db")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("faucet: telemetry.postgres_string: not a valid PostgreSQL "
                           "connection string")
    assert SECRET not in line


def test_mismatched_table_exits_2_before_any_worker(pg_empty_dsn):
    query(pg_empty_dsn, "CREATE TABLE faucet_http_events (request_uuid uuid, status int)")
    result = run_to_exit("start", "--dir", str(PLUMBER), "--host", f"127.0.0.1:{free_port()}",
                         "--telemetry-postgres-string", pg_empty_dsn)
    assert result.returncode == 2
    assert "Worker::" not in result.stderr  # telemetry is checked before workers start
    assert "status is integer, expected smallint" in result.stderr
    assert "time (timestamp with time zone) is missing" in result.stderr


@pytest.mark.parametrize("form", ["uri", "keywords"])
def test_password_never_reaches_the_logs(tmp_path, form):
    closed = free_port()
    conn_string = {
        "uri": f"postgresql://postgres:{SECRET}@127.0.0.1:{closed}/test",
        "keywords": f"host=127.0.0.1 port={closed} user=postgres password={SECRET} dbname=test",
    }[form]
    with served("start", "--dir", str(PLUMBER), "--workers", "1",
                "--rscript", never_listening_rscript(tmp_path),
                "--worker-wait-timeout", "0.2", "--log-level", "debug",
                "--telemetry-postgres-string", conn_string,
                "--telemetry-flush-timeout", "0.5") as faucet:
        # A 503 is an event: the sink then tries (and fails) to write it.
        assert httpx.get(faucet.url + "/x").status_code == 503
        faucet.read += wait_for_line(faucet.proc, "keeping events and retrying")
        out, err = faucet.stop()
    assert f"127.0.0.1:{closed}/test unreachable at start-up" in err
    # The 503 and the worker's start (it never comes online).
    assert "2 events not written before the flush deadline" in err
    assert SECRET not in err and SECRET not in out
