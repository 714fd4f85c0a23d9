"""An example faucet telemetry sink: each event as one JSON line appended to a file.

Configure it with::

    [telemetry]
    sink = "jsonfile"

    [telemetry.sink_options]
    path = "/var/log/faucet/events.jsonl"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from faucet.config import TelemetryConfig
from faucet.errors import ConfigError
from faucet.events import HttpEvent


class JsonFileSink:
    def __init__(self, file: Any) -> None:  # a trio async file, from trio.open_file
        self._file = file

    @classmethod
    async def open(cls, options: Mapping[str, Any], config: TelemetryConfig) -> JsonFileSink:
        """The factory faucet calls at start-up: check the options, open the file."""
        unknown = set(options) - {"path"}
        if unknown or not isinstance(options.get("path"), str):
            raise ConfigError(
                "telemetry.sink_options: the jsonfile sink takes one string option, path"
            )
        try:
            file = await trio.open_file(options["path"], "a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"telemetry.sink_options.path: {exc}") from None
        return cls(file)

    async def write_batch(self, events: Sequence[HttpEvent]) -> None:
        # An OSError here (disk full...) makes faucet keep the batch and retry it later.
        await self._file.write("".join(event.to_json() + "\n" for event in events))
        await self._file.flush()

    async def aclose(self) -> None:
        await self._file.aclose()
