"""The postgres sink against a real server: exact rows, reconnection, outages, secrets."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import socket
import uuid
from collections.abc import Iterator

import attrs
import psycopg
import pytest
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from faucet.config.settings import TelemetryConfig
from faucet.errors import ConfigError
from faucet.lifecycle.deploy import free_port
from faucet.sinks.pg_conninfo import connection_settings
from faucet.telemetry.recorder import Recorder, serve_telemetry
from faucet.telemetry.table_init import SQL_DIR, init_table
from tests.forwarder import Forwarder
from tests.helpers import make_event, until
from tests.pg import query, start_up_error

SECRET = "pw-Secret-0417"


def via(dsn: str, port: int) -> str:
    return make_conninfo(dsn, host="127.0.0.1", port=port)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that takes connections and never answers: the kernel completes each
    handshake into the backlog, nobody accepts (a database hung with TCP open)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def lock_table(dsn: str) -> psycopg.Connection:
    """A connection whose open transaction holds ACCESS EXCLUSIVE on the table (blocking)."""
    conn = psycopg.connect(dsn)
    conn.execute("LOCK TABLE faucet_http_events IN ACCESS EXCLUSIVE MODE")
    return conn


async def produce(recorder: Recorder, start: int, count: int) -> None:
    """Record events ``start`` to ``start + count - 1`` as traffic arrives: fifty at a
    time, with the sink's writes going on in between."""
    for i in range(start, start + count):
        recorder.record(make_event(i))
        if i % 50 == 0:
            await trio.sleep(0.002)


def count_rows(dsn: str) -> int:
    return query(dsn, "SELECT count(DISTINCT request_uuid), count(*) FROM faucet_http_events")[0]


async def test_every_column_round_trips(pg_dsn):
    tz = datetime.timezone(datetime.timedelta(hours=-5))
    events = [
        make_event(1),
        make_event(2, ip_addr=ipaddress.ip_address("2001:db8::42"), status=503,
                   time=datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=tz)),
        make_event(3, version=None, target=None, worker_route="/api/", worker_id=None,
                   ip_addr=None, query_params=None, user_agent=None, method="POST",
                   path="/ünï cödé", http_version="HTTP/2", elapsed=2**40),
    ]  # fmt: skip
    config = TelemetryConfig(postgres_string=pg_dsn, namespace="ns")
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for event in events:
            recorder.record(event)
        recorder.close()
    rows = query(pg_dsn, "SELECT * FROM faucet_http_events ORDER BY elapsed")
    # The event's fields are the table's columns, in order.
    assert rows == [attrs.astuple(event, recurse=False) for event in events]


async def test_n_events_make_exactly_n_rows_in_batches(pg_dsn):
    config = TelemetryConfig(postgres_string=pg_dsn, batch_size=700, flush_interval=0.05)
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        await produce(recorder, 0, 5000)
        recorder.close()
    assert recorder.statistics().written == 5000
    assert count_rows(pg_dsn) == (5000, 5000)


async def test_terminated_backend_is_reconnected_without_loss(pg_dsn, pg_server):
    name = f"faucet-test-{uuid.uuid4().hex[:8]}"
    dsn = make_conninfo(pg_dsn, application_name=name)
    config = TelemetryConfig(postgres_string=dsn, batch_size=200, flush_interval=0.02)
    kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for round_ in range(3):
            await produce(recorder, round_ * 1000, 1000)
            await until(lambda r=round_: recorder.statistics().written >= r * 1000 + 200)
            assert await trio.to_thread.run_sync(query, pg_server, kill, (name,)) == [(True,)]
        recorder.close()
    assert recorder.statistics().written == 3000
    assert count_rows(pg_dsn) == (3000, 3000)


async def test_outage_loses_nothing_and_is_logged_once(pg_dsn, caplog):
    caplog.set_level(logging.INFO, logger="faucet.telemetry")
    params = conninfo_to_dict(pg_dsn)
    forwarder = Forwarder(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    async with trio.open_nursery() as outer:
        port = await outer.start(forwarder.serve)
        config = TelemetryConfig(postgres_string=via(pg_dsn, port), batch_size=300,
                                 flush_interval=0.02)  # fmt: skip
        async with trio.open_nursery() as nursery:
            recorder = await nursery.start(serve_telemetry, config)
            await produce(recorder, 0, 1000)
            await until(lambda: recorder.statistics().written == 1000)
            forwarder.cut()
            await produce(recorder, 1000, 2000)
            await until(lambda: not recorder.statistics().sink_available)
            # The sink keeps retrying (three reconnects refused), and writes nothing.
            await until(lambda: forwarder.refused >= 3)
            assert recorder.statistics().written == 1000
            forwarder.restore()
            await produce(recorder, 3000, 500)
            recorder.close()
        outer.cancel_scope.cancel()
    stats = recorder.statistics()
    assert (stats.written, stats.dropped, stats.failed) == (3500, 0, 0)
    assert count_rows(pg_dsn) == (3500, 3500)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("available again" in m for m in messages) == 1


async def test_table_dropped_while_running_is_an_outage_not_a_loss(pg_dsn, caplog):
    config = TelemetryConfig(postgres_string=pg_dsn, batch_size=100, flush_interval=0.02)
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        await produce(recorder, 0, 300)
        await until(lambda: recorder.statistics().written == 300)
        await trio.to_thread.run_sync(query, pg_dsn, "DROP TABLE faucet_http_events")
        await produce(recorder, 300, 300)
        await until(lambda: not recorder.statistics().sink_available)
        await trio.to_thread.run_sync(init_table, pg_dsn, None, None, False)
        recorder.close()
    assert (recorder.statistics().written, recorder.statistics().failed) == (600, 0)
    assert count_rows(pg_dsn) == (300, 300)  # the rows from before the drop went with it
    assert "faucet_http_events not found" in caplog.text


async def test_a_batch_the_database_refuses_is_counted_failed(pg_dsn, caplog):
    config = TelemetryConfig(postgres_string=pg_dsn, batch_size=1, flush_interval=0.01)
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        recorder.record(make_event(1, path="nul \x00 byte"))
        recorder.record(make_event(2))
        recorder.close()
    assert (recorder.statistics().written, recorder.statistics().failed) == (1, 1)
    assert "rejected 1 events" in caplog.text
    assert count_rows(pg_dsn) == (1, 1)


async def test_unreachable_at_start_warns_keeps_serving_and_hides_the_password(caplog):
    caplog.set_level(logging.INFO, logger="faucet.telemetry")
    dsn = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/test"
    config = TelemetryConfig(postgres_string=dsn, flush_interval=0.01, flush_timeout=0.5)
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for i in range(10):
            recorder.record(make_event(i))
        await until(lambda: not recorder.statistics().sink_available)
        recorder.close()
    assert recorder.statistics().failed == 10
    assert "unreachable at start-up" in caplog.text
    assert "127.0.0.1" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "conn_string",
    [
        f"postgresql://u:{SECRET} x@localhost/db",
        f"postgresql://u:{SECRET}%zz@localhost/db",
        f"host=localhost password={SECRET} bogus",
        f"host=localhost password='{SECRET}",
        f"postgresql://u@localhost/db?password={SECRET}&nonsense=1",
    ],
)
def test_malformed_connection_string_is_a_config_error_without_the_password(conn_string):
    with pytest.raises(ConfigError, match="not a valid PostgreSQL connection string") as info:
        connection_settings(conn_string, None, None)
    assert SECRET not in str(info.value)


def test_timeouts_become_connect_arguments():
    settings = connection_settings("host=db options='-csearch_path=x'", None, None,
                                   connect_timeout=7, statement_timeout=2.5)
    assert (settings.kwargs["connect_timeout"], settings.connect_timeout) == ("7", 7)
    # Ours first: a statement_timeout in the string's own options would still win.
    assert settings.kwargs["options"] == "-c statement_timeout=2500 -csearch_path=x"
    own = connection_settings("host=db connect_timeout=3", None, None, connect_timeout=7)
    assert ("connect_timeout" not in own.kwargs, own.connect_timeout) == (True, 3)


def test_the_server_gets_the_statement_timeout_and_keeps_the_string_options(pg_dsn):
    settings = connection_settings(pg_dsn, None, None, statement_timeout=2.5)
    with settings.connect() as conn:
        timeout, path = conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('search_path')"
        ).fetchone()
    assert (timeout, path) == ("2500ms", conninfo_to_dict(pg_dsn)["options"].split("=")[1])


async def test_a_database_that_never_answers_is_hung_and_cannot_hold_shutdown(
    autojump_clock, caplog
):
    """On trio's virtual clock the threads' real waits take no time: the deadlines alone
    decide, so this shows exactly when each one cuts a connect that gets no answer."""
    caplog.set_level(logging.INFO, logger="faucet.telemetry")
    with silent_listener() as port:
        dsn = f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/test"
        config = TelemetryConfig(postgres_string=dsn, connect_timeout=20,
                                 statement_timeout=40, flush_interval=0.01, flush_timeout=3)
        async with trio.open_nursery() as nursery:
            recorder = await nursery.start(serve_telemetry, config)
            assert trio.current_time() == pytest.approx(60)  # the start-up check gave up
            for i in range(10):
                recorder.record(make_event(i))
            with trio.fail_after(600):
                while recorder.statistics().sink_status != "hung":  # noqa: ASYNC110
                    await trio.sleep(1)
            stats = recorder.statistics()
            assert stats.last_error == "no answer within 60 s (connect_timeout + statement_timeout)"
            assert (stats.sink_available, stats.pending, stats.written) == (False, 10, 0)
            closed_at = trio.current_time()
            recorder.close()
    assert trio.current_time() - closed_at == pytest.approx(3)
    assert recorder.statistics().failed == 10
    assert "unreachable at start-up (no answer within 60 s" in caplog.text
    assert "telemetry sink 'postgres' hung: no answer within 60 s" in caplog.text
    assert "10 events not written before the flush deadline" in caplog.text
    assert SECRET not in caplog.text


async def test_a_locked_table_times_out_as_hung_and_loses_nothing(pg_dsn):
    config = TelemetryConfig(postgres_string=pg_dsn, statement_timeout=0.3, batch_size=50,
                             flush_interval=0.02)  # fmt: skip
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        await produce(recorder, 0, 100)
        await until(lambda: recorder.statistics().written == 100)
        locker = await trio.to_thread.run_sync(lock_table, pg_dsn)
        try:
            await produce(recorder, 100, 200)
            await until(lambda: recorder.statistics().sink_status == "hung")
            stats = recorder.statistics()
            assert stats.last_error == "canceling statement due to statement timeout"
            assert stats.written == 100
        finally:
            await trio.to_thread.run_sync(locker.close)  # rolls back: the lock goes
        await until(lambda: recorder.statistics().written == 300)
        assert recorder.statistics().sink_status == "ok"
        recorder.close()
    stats = recorder.statistics()
    assert (stats.written, stats.dropped, stats.failed) == (300, 0, 0)
    assert count_rows(pg_dsn) == (300, 300)


async def test_a_frozen_network_is_given_up_as_hung_and_nothing_is_written_twice(pg_dsn):
    """Neither connect_timeout nor statement_timeout can fire when the network itself
    hangs: the sink's own bound gives the call up. The abandoned COPY is still waiting
    for the server when the network thaws; it must send no rows then, since the batch
    has been written again on a new connection."""
    params = conninfo_to_dict(pg_dsn)
    forwarder = Forwarder(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    async with trio.open_nursery() as outer:
        port = await outer.start(forwarder.serve)
        config = TelemetryConfig(postgres_string=via(pg_dsn, port), connect_timeout=2,
                                 statement_timeout=0.5, batch_size=50, flush_interval=0.02)
        async with trio.open_nursery() as nursery:
            recorder = await nursery.start(serve_telemetry, config)
            await produce(recorder, 0, 100)
            # Idle (nothing pending) before freezing, so no COPY is cut half-sent.
            await until(lambda: recorder.statistics().written == 100)
            forwarder.freeze()
            await produce(recorder, 100, 100)
            await until(lambda: recorder.statistics().sink_status == "hung")
            assert recorder.statistics().last_error == (
                "no answer within 2.5 s (connect_timeout + statement_timeout)")
            forwarder.thaw()
            await until(lambda: recorder.statistics().written == 200)
            recorder.close()
        # Every connection over, the abandoned one too: the row count is final.
        await until(lambda: not forwarder.upstream_ports)
        outer.cancel_scope.cancel()
    assert (recorder.statistics().written, recorder.statistics().failed) == (200, 0)
    assert count_rows(pg_dsn) == (200, 200)


def test_ssl_settings_become_connect_arguments(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    settings = connection_settings("host=db user=faucet", "verify-full", str(ca))
    assert settings.kwargs["sslmode"] == "verify-full"
    assert settings.kwargs["sslrootcert"] == str(ca)
    with pytest.raises(ConfigError, match="sslcert"):
        connection_settings("host=db", "verify-full", str(tmp_path / "missing.pem"))


async def test_sslmode_is_applied_to_the_connection(pg_dsn, caplog):
    """The server under test speaks no TLS (or not with our empty CA), so requiring
    verification must make it unreachable."""
    ssl_on = query(pg_dsn, "SHOW ssl") == [("on",)]
    config = TelemetryConfig(postgres_string=pg_dsn, sslmode="require" if not ssl_on else
                             "verify-full", flush_timeout=0.2)  # fmt: skip
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        recorder.close()
    assert "unreachable at start-up" in caplog.text
    assert "ssl" in caplog.text.lower()


async def test_missing_table_is_a_config_error(pg_empty_dsn):
    assert "faucet telemetry init" in await start_up_error(pg_empty_dsn)


async def test_mismatched_columns_are_a_config_error(pg_empty_dsn):
    query(pg_empty_dsn, "CREATE TABLE faucet_http_events (request_uuid uuid, status int)")
    message = await start_up_error(pg_empty_dsn)
    assert "status is integer, expected smallint" in message
    assert "time (timestamp with time zone) is missing" in message


async def test_sink_options_are_rejected(pg_dsn):
    config = TelemetryConfig(postgres_string=pg_dsn, sink_options={"table": "x"})
    async with trio.open_nursery() as nursery:
        with pytest.raises(ConfigError, match="takes none"):
            await nursery.start(serve_telemetry, config)


def test_init_is_idempotent_and_the_ready_queries_run(pg_dsn):
    init_table(pg_dsn, None, None, timescale=False)
    query(pg_dsn, "INSERT INTO faucet_http_events (time, path, elapsed, status) "
                  "VALUES (now(), '/', 3, 200), (now(), '/x', 5, 500)")  # fmt: skip
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        statements = (SQL_DIR / "queries.sql").read_text().split(";")
        for statement in filter(lambda text: "SELECT" in text, statements):
            assert conn.execute(statement).fetchall()


def test_init_reports_a_missing_timescaledb_without_the_password(pg_dsn):
    if query(pg_dsn, "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"):
        pytest.skip("TimescaleDB is installed here")
    dsn = make_conninfo(pg_dsn, password=SECRET)
    with pytest.raises(ConfigError, match="timescaledb") as info:
        init_table(dsn, None, None, timescale=True)
    assert SECRET not in str(info.value)
