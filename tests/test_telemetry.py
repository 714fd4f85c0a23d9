"""The recorder and batching loop, against an in-memory sink (timers on autojump_clock)."""

from __future__ import annotations

import datetime
import logging
import threading

import pytest
import trio

from faucet.config.settings import TelemetryConfig, load_config
from faucet.errors import ConfigError
from faucet.events import HttpEvent, LogEvent
from faucet.sinks import SinkHung, SinkUnavailable
from faucet.telemetry.recorder import RETRY_MAX, Recorder, serve_telemetry
from faucet.workers.app_events import parse_line
from tests.helpers import make_event, registered_sink
from tests.test_app_events import NOW, marker, r_fields


def config(**settings) -> TelemetryConfig:
    return TelemetryConfig(sink="memory", **settings)


async def start(nursery: trio.Nursery, **settings) -> Recorder:
    return await nursery.start(serve_telemetry, config(**settings))


async def test_batches_by_size(sink, autojump_clock):
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, batch_size=10, flush_interval=60)
        for i in range(25):
            recorder.record(make_event(i))
        await trio.sleep(1)
        assert [len(b) for b in sink.batches] == [10, 10]
        assert recorder.statistics().pending == 5
        await trio.sleep(60)
        assert [len(b) for b in sink.batches] == [10, 10, 5]
        recorder.close()
    assert [e.elapsed for e in sink.events] == list(range(25))


async def test_idle_server_flushes_within_the_interval(sink, autojump_clock):
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, batch_size=1000, flush_interval=2)
        recorder.record(make_event(1))
        await trio.sleep(1.5)
        recorder.record(make_event(2))
        await trio.sleep(0.4)
        assert sink.batches == []
        await trio.sleep(0.2)
        assert [len(b) for b in sink.batches] == [2]
        recorder.close()


async def test_record_never_waits_and_counts_drops_when_full(sink, autojump_clock):
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, queue_size=5, batch_size=100, flush_interval=1)
        for i in range(8):  # record() is synchronous: the sink task cannot run meanwhile
            recorder.record(make_event(i))
        # The first goes straight to the waiting sink task (still counted as queued until
        # that task runs), five fill the channel.
        stats = recorder.statistics()
        assert (stats.queued, stats.pending, stats.dropped) == (6, 0, 2)
        recorder.close()
        recorder.record(make_event(9))
    stats = recorder.statistics()
    assert (stats.written, stats.dropped, stats.failed) == (6, 3, 0)
    assert [e.elapsed for e in sink.events] == [0, 1, 2, 3, 4, 5]


async def test_close_flushes_everything_queued_without_waiting(sink, autojump_clock):
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, batch_size=1000, flush_interval=3600)
        for i in range(2500):
            recorder.record(make_event(i))
        recorder.close()
    assert len(sink.events) == 2500
    assert trio.current_time() < 1
    assert sink.closed


async def test_cancellation_still_flushes_shielded(sink, autojump_clock):
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, batch_size=1000, flush_interval=3600)
        for i in range(1500):
            recorder.record(make_event(i))
        nursery.cancel_scope.cancel()
    assert len(sink.events) == 1500
    assert recorder.statistics().written == 1500


async def test_outage_keeps_the_batch_and_logs_once(sink, autojump_clock, caplog):
    caplog.set_level(logging.INFO, logger="faucet.telemetry")
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, queue_size=10, batch_size=5, flush_interval=0.1)
        sink.down = True
        for i in range(5):
            recorder.record(make_event(i))
        await trio.sleep(1)
        assert not recorder.statistics().sink_available
        for i in range(5, 20):  # 10 fit in the channel while the batch waits
            recorder.record(make_event(i))
        await trio.sleep(60)
        stats = recorder.statistics()
        assert (stats.pending, stats.queued, stats.dropped, stats.written) == (5, 10, 5, 0)
        assert sink.attempts < 25  # backoff, not a busy loop
        sink.down = False
        await trio.sleep(RETRY_MAX + 1)
        assert recorder.statistics().sink_available
        recorder.close()
    assert [e.elapsed for e in sink.events] == list(range(15))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    (back,) = [m for m in messages if "available again" in m]
    assert "15 events waited, 5 dropped" in back


async def test_close_during_outage_gives_up_at_the_flush_timeout(sink, autojump_clock, caplog):
    sink.down = True
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, batch_size=5, flush_timeout=3)
        for i in range(12):
            recorder.record(make_event(i))
        await trio.sleep(10)
        closed_at = trio.current_time()
        recorder.close()
    assert trio.current_time() - closed_at == pytest.approx(3)
    assert recorder.statistics().failed == 12
    assert "12 events not written" in caplog.text


async def test_rejected_batch_is_counted_and_the_next_one_written(sink, autojump_clock, caplog):
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, batch_size=3)
        sink.reject = True
        for i in range(3):
            recorder.record(make_event(i))
        await trio.sleep(2)
        sink.reject = False
        recorder.record(make_event(3))
        recorder.close()
    stats = recorder.statistics()
    assert (stats.written, stats.failed) == (1, 3)
    assert "rejected 3 events: bad batch" in caplog.text


async def test_disabled_telemetry_runs_the_null_sink(autojump_clock):
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, TelemetryConfig())
        assert not recorder.enabled
        assert (recorder.namespace, recorder.version) == ("faucet", None)
        recorder.record(make_event())
        recorder.close()
    assert recorder.statistics().written == 1


class ScriptedSink:
    """Fails each write with the next exception of ``errors`` (None: writes), then writes."""

    def __init__(self, *errors: Exception | None) -> None:
        self.errors = list(errors)
        self.events: list = []

    async def write_batch(self, events) -> None:
        await trio.sleep(0.001)
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        self.events.extend(events)

    async def aclose(self) -> None:
        pass


async def test_health_shows_the_sink_status_and_its_last_error(autojump_clock):
    sink = ScriptedSink(SinkUnavailable("connection refused"),
                        SinkHung("no answer from postgresql://u:pw-0417@db/x"), None)
    with registered_sink("scripted", lambda options, config: sink):
        async with trio.open_nursery() as nursery:
            recorder = await nursery.start(serve_telemetry, TelemetryConfig(sink="scripted"))
            first = recorder.statistics()
            recorder.record(make_event(1))
            seen = []
            while recorder.statistics().written == 0:
                stats = recorder.statistics()
                if not seen or seen[-1][0] != stats.sink_status:
                    seen.append((stats.sink_status, stats.sink_available, stats.last_error))
                await trio.sleep(0.01)
            recorder.close()
    assert (first.sink_status, first.sink_available, first.last_error) == ("ok", True, None)
    assert seen == [("ok", True, None), ("unavailable", False, "connection refused"),
                    ("hung", False, "no answer from postgresql://u:***@db/x")]
    stats = recorder.statistics()
    assert (stats.sink_status, stats.sink_available, stats.written) == ("ok", True, 1)
    assert stats.last_error == "no answer from postgresql://u:***@db/x"  # kept, with its time
    assert datetime.datetime.fromisoformat(stats.last_error_at).tzinfo == datetime.UTC


async def test_a_rejected_batch_is_the_last_error_and_the_sink_stays_ok(autojump_clock):
    sink = ScriptedSink(ValueError("bad row: password=hunter2 in path"))
    with registered_sink("scripted", lambda options, config: sink):
        async with trio.open_nursery() as nursery:
            recorder = await nursery.start(serve_telemetry, TelemetryConfig(sink="scripted"))
            recorder.record(make_event(1))
            recorder.close()
    stats = recorder.statistics()
    assert (stats.sink_status, stats.failed) == ("ok", 1)
    assert stats.last_error == "bad row: password=*** in path"


class StuckSink:
    """A blocking driver that never answers: each write waits in a worker thread (the
    way the Sink protocol asks, abandonable) on an event only the test sets."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    async def write_batch(self, events) -> None:
        self.calls += 1
        await trio.to_thread.run_sync(self.release.wait, abandon_on_cancel=True)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def stuck_sink():
    sink = StuckSink()
    with registered_sink("stuck", lambda options, config: sink):
        yield sink
    sink.release.set()  # let the abandoned threads end


@pytest.mark.parametrize("how", ["close", "cancel"])
async def test_shutdown_never_waits_past_flush_timeout_for_a_hung_write(
    stuck_sink, how, autojump_clock, caplog
):
    config = TelemetryConfig(sink="stuck", batch_size=10, flush_timeout=4)
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for i in range(25):
            recorder.record(make_event(i))
        await trio.sleep(100)
        assert (stuck_sink.calls, recorder.statistics().pending) == (1, 10)
        stopped_at = trio.current_time()
        if how == "close":
            recorder.close()
        else:
            nursery.cancel_scope.cancel()
    assert trio.current_time() - stopped_at == pytest.approx(4)
    assert recorder.statistics().failed == 25
    assert "25 events not written before the flush deadline" in caplog.text


def test_timeouts_have_one_name_everywhere():
    config = load_config(None, {"FAUCET_TELEMETRY_CONNECT_TIMEOUT": "7"},
                         {"telemetry.statement_timeout": "2.5"})
    assert (config.telemetry.connect_timeout, config.telemetry.statement_timeout) == (7, 2.5)
    assert (TelemetryConfig().connect_timeout, TelemetryConfig().statement_timeout) == (5, 10.0)
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, {"telemetry.connect_timeout": "1",
                               "telemetry.statement_timeout": "0"})
    assert info.value.problems == [
        "telemetry.connect_timeout = 1 (from --telemetry-connect-timeout): must be at least 2",
        "telemetry.statement_timeout = 0.0 (from --telemetry-statement-timeout): "
        "must be greater than 0",
    ]


def log_event(i: int) -> LogEvent:
    return parse_line(marker(r_fields(message=[f"event {i}"])), namespace="faucet",
                      version=None, worker_id=1, worker_route=None, now=NOW)


async def test_a_sink_without_event_types_gets_http_events_only(sink, autojump_clock):
    """A sink written before LogEvent existed is never handed one."""
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery)
        assert recorder.wants(HttpEvent) and not recorder.wants(LogEvent)
        recorder.record(log_event(1))
        recorder.record(make_event(2))
        recorder.close()
    assert sink.events == [make_event(2)]
    stats = recorder.statistics()
    assert (stats.written, stats.dropped, stats.failed) == (1, 0, 0)


async def test_a_sink_declaring_both_types_gets_mixed_batches_in_order(sink, autojump_clock):
    sink.event_types = (HttpEvent, LogEvent)
    async with trio.open_nursery() as nursery:
        recorder = await start(nursery, batch_size=10)
        assert recorder.wants(LogEvent)
        events = [make_event(1), log_event(2), make_event(3), log_event(4)]
        for event in events:
            recorder.record(event)
        recorder.close()
    assert sink.batches == [events]
