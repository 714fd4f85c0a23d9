"""Loading sinks by name, and the sinks that need no database."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from importlib.metadata import EntryPoint, EntryPoints

import pytest
import trio

import faucet.sinks
from faucet.config.settings import TelemetryConfig
from faucet.errors import ConfigError
from faucet.sinks import available_sinks, load_sink
from faucet.sinks.null import NullSink
from faucet.sinks.stdout import StdoutSink
from faucet.telemetry.recorder import serve_telemetry
from tests.helpers import make_event, registered_sink
from tests.test_telemetry import log_event


def test_builtins_load_by_name():
    assert load_sink("stdout") is StdoutSink
    assert load_sink("null") is NullSink
    assert callable(load_sink("postgres"))


def test_unknown_sink_names_every_available_one():
    with registered_sink("mine", NullSink), pytest.raises(ConfigError) as info:
        load_sink("nope")
    message = str(info.value)
    assert "telemetry.sink = 'nope'" in message
    assert "available: postgres, stdout, null" in message
    assert "mine" in message
    assert "faucet.sinks" in message


def test_builtin_names_win_over_the_registry():
    with registered_sink("stdout", NullSink):
        assert load_sink("stdout") is StdoutSink


def test_plugin_that_fails_to_import_is_a_config_error(monkeypatch):
    broken = EntryPoint("broken", "faucet_no_such_module:Sink", faucet.sinks.ENTRY_POINT_GROUP)

    def fake_entry_points(*, group, name=None):
        return EntryPoints([broken] if name in (None, "broken") else [])

    monkeypatch.setattr(faucet.sinks, "entry_points", fake_entry_points)
    with pytest.raises(ConfigError, match="cannot load plugin 'faucet_no_such_module:Sink'.*"
                       "ModuleNotFoundError"):  # fmt: skip
        load_sink("broken")
    assert available_sinks() == ["postgres", "stdout", "null", "broken"]


async def test_unknown_sink_fails_before_started():
    async with trio.open_nursery() as nursery:
        with pytest.raises(ConfigError, match="unknown sink"):
            await nursery.start(serve_telemetry, TelemetryConfig(sink="nope"))


async def test_stdout_sink_writes_json_lines(capsys):
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, TelemetryConfig(sink="stdout"))
        assert recorder.enabled
        for i in range(3):
            recorder.record(make_event(i))
        recorder.close()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        json.loads(make_event(i).to_json()) for i in range(3)
    ]
    assert json.loads(lines[2])["time"] == "2024-05-01T12:00:00.000002+00:00"


async def test_stdout_sink_writes_log_events_with_their_type(capsys):
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, TelemetryConfig(sink="stdout"))
        recorder.record(make_event(1))
        recorder.record(log_event(2))
        recorder.close()
    http, log = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (http["type"], http["elapsed"]) == ("http", 1)
    assert (log["type"], log["message"], log["level"]) == ("log", "event 2", "info")


async def test_null_sink_counts():
    sink = NullSink({}, TelemetryConfig())
    await sink.write_batch([make_event(1), make_event(2)])
    assert sink.events == 2


async def test_example_plugin_is_selected_through_its_entry_point(tmp_path):
    pytest.importorskip("faucet_sink_jsonfile", reason="pip install -e examples/sink-plugin")
    path = tmp_path / "events.jsonl"
    config = TelemetryConfig(sink="jsonfile", sink_options={"path": str(path)})
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for i in range(4):
            recorder.record(make_event(i))
        recorder.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["elapsed"] for row in rows] == [0, 1, 2, 3]


async def test_example_plugin_rejects_bad_options():
    pytest.importorskip("faucet_sink_jsonfile", reason="pip install -e examples/sink-plugin")
    async with trio.open_nursery() as nursery:
        with pytest.raises(ConfigError, match="path"):
            await nursery.start(serve_telemetry, TelemetryConfig(sink="jsonfile"))


@pytest.fixture
def stalled_pipe():
    """A pipe whose reader stopped: once its buffer (64 kB) is full, a write blocks for good."""
    read_end, write_end = os.pipe()
    pipe = open(write_end, "w")  # noqa: SIM115 (closed below, once nothing can block on it)
    yield pipe
    os.close(read_end)  # the abandoned write fails at once, and so does this flush
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


async def test_a_stdout_nobody_reads_cannot_hold_shutdown(stalled_pipe, monkeypatch,
                                                          autojump_clock):
    # Here, not in the fixture: pytest's capture puts its own sys.stdout back between them.
    monkeypatch.setattr(sys, "stdout", stalled_pipe)
    config = TelemetryConfig(sink="stdout", batch_size=1000, flush_timeout=2)
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for i in range(1000):  # ~400 kB of JSON lines
            recorder.record(make_event(i))
        await trio.sleep(10)
        closed_at = trio.current_time()
        recorder.close()
    assert (trio.current_time() - closed_at, recorder.statistics().failed) == (
        pytest.approx(2), 1000)


async def test_example_plugin_writes_log_events_to_their_own_file(tmp_path):
    pytest.importorskip("faucet_sink_jsonfile", reason="pip install -e examples/sink-plugin")
    http_path, log_path = tmp_path / "http.jsonl", tmp_path / "log.jsonl"
    config = TelemetryConfig(sink="jsonfile", sink_options={"path": str(http_path),
                                                            "log_path": str(log_path)})
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for i in range(3):
            recorder.record(make_event(i))
            recorder.record(log_event(i))
        recorder.close()
    http = [json.loads(line) for line in http_path.read_text().splitlines()]
    logs = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(row["type"], row["elapsed"]) for row in http] == [("http", 0), ("http", 1),
                                                               ("http", 2)]
    assert [(row["type"], row["message"]) for row in logs] == [
        ("log", "event 0"), ("log", "event 1"), ("log", "event 2")]
