"""An example faucet telemetry sink: each event as one JSON line appended to a file,
HTTP events to ``path`` and app/worker log events to ``log_path`` (default: ``path`` too;
each line's ``type`` field tells them apart).

Configure it with::

    [telemetry]
    sink = "jsonfile"

    [telemetry.sink_options]
    path = "/var/log/faucet/events.jsonl"
    log_path = "/var/log/faucet/app-events.jsonl"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from faucet.sinks import ConfigError, Event, HttpEvent, LogEvent, TelemetryConfig


class JsonFileSink:
    # The event types this sink stores; without this attribute faucet would hand it
    # HttpEvents only.
    event_types = (HttpEvent, LogEvent)

    def __init__(self, files: dict[type, Any]) -> None:  # trio async files, by event type
        self._files = files

    @classmethod
    async def open(cls, options: Mapping[str, Any], config: TelemetryConfig) -> JsonFileSink:
        """The factory faucet calls at start-up: check the options, open the files."""
        unknown = set(options) - {"path", "log_path"}
        path = options.get("path")
        paths = {"path": path, "log_path": options.get("log_path", path)}
        if unknown or not all(isinstance(path, str) for path in paths.values()):
            raise ConfigError(
                f"telemetry.sink_options = {dict(options)!r}: the jsonfile sink takes path "
                "(the file for HTTP events) and optionally log_path (for app events)"
            )
        opened: dict[str, Any] = {}
        try:
            for path in dict.fromkeys(paths.values()):  # one file object per distinct path
                opened[path] = await trio.open_file(path, "a", encoding="utf-8")
        except OSError as exc:
            for file in opened.values():
                await file.aclose()
            raise ConfigError(f"telemetry.sink_options: {exc}") from None
        return cls({HttpEvent: opened[paths["path"]], LogEvent: opened[paths["log_path"]]})

    async def write_batch(self, events: Sequence[Event]) -> None:
        # An OSError here (disk full...) makes faucet keep the batch and retry it later
        # (whole: lines already written to one file are then written again).
        lines: dict[Any, list[str]] = {}
        for event in events:
            lines.setdefault(self._files[type(event)], []).append(event.to_json() + "\n")
        for file, text in lines.items():
            await file.write("".join(text))
            await file.flush()

    async def aclose(self) -> None:
        for file in set(self._files.values()):
            await file.aclose()
