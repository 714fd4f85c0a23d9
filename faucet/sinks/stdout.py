"""The ``stdout`` sink: one JSON object per event and line, for log shippers and debugging;
its ``type`` field (``http``, ``log``) tells the two kinds of event apart."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from faucet.events import HttpEvent, LogEvent

if TYPE_CHECKING:
    from faucet.config.settings import TelemetryConfig
    from faucet.events import Event


class StdoutSink:
    event_types = (HttpEvent, LogEvent)

    def __init__(self, options: Mapping[str, Any], config: TelemetryConfig) -> None:
        pass

    async def write_batch(self, events: Sequence[Event]) -> None:
        text = "".join(event.to_json() + "\n" for event in events)
        # A pipe to a slow reader blocks; keep that off the event loop, and let the
        # shutdown flush deadline abandon a write to a reader that stopped for good
        # (those events are counted as failed, though the thread may print them later).
        await trio.to_thread.run_sync(_write, text, abandon_on_cancel=True)

    async def aclose(self) -> None:
        pass


def _write(text: str) -> None:
    # Looked up at each call so a redirected sys.stdout (tests, embedding) is honoured.
    sys.stdout.write(text)
    sys.stdout.flush()
