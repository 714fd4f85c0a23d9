"""The ``null`` sink: counts events and discards them (telemetry off, or benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from faucet.events import HttpEvent, LogEvent

if TYPE_CHECKING:
    from faucet.config.settings import TelemetryConfig
    from faucet.events import Event


class NullSink:
    event_types = (HttpEvent, LogEvent)

    def __init__(self, options: Mapping[str, Any], config: TelemetryConfig) -> None:
        self.events = 0

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.events += len(events)

    async def aclose(self) -> None:
        pass
