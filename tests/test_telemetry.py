"""The recorder and batching loop, against an in-memory sink (timers on autojump_clock)."""

from __future__ import annotations

import logging

import pytest
import trio

from faucet.config import TelemetryConfig
from faucet.telemetry import RETRY_MAX, Recorder, serve_telemetry
from tests.helpers import make_event


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
