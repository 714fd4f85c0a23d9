"""One ``HttpEvent`` per proxied request, and ``LogEvent``s from the workers: recorded
without ever blocking the request, batched by size or age, and handed to the configured
sink by one task. Batches may mix both types; a sink receives only the types it declares
(``Sink.event_types``; a sink that declares none gets only ``HttpEvent``s, as before).

The request path calls ``Recorder.record`` (a ``send_nowait`` on a bounded channel; a full
channel counts a drop instead of waiting). ``serve_telemetry`` owns the other end: it
collects up to ``batch_size`` events or whatever arrived within ``flush_interval`` of the
first one, and writes the batch. While the sink is unreachable (or hung: connected but
silent) it keeps that batch and retries with capped exponential backoff, so nothing is lost
as long as the backlog fits the channel. On shutdown it flushes what is queued within
``flush_timeout``; what is still unwritten then is counted as failed and logged.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import logging

import attrs
import trio

from faucet.config.settings import TelemetryConfig
from faucet.events import Event, HttpEvent
from faucet.redact import error_text
from faucet.sinks import Sink, SinkHung, SinkUnavailable, open_sink

logger = logging.getLogger("faucet.telemetry")

# Backoff between attempts while the sink is unavailable (seconds).
RETRY_INITIAL = 0.1
RETRY_MAX = 5.0


class SinkStatus(enum.StrEnum):
    """How the sink's last write went."""

    OK = "ok"  # written (or nothing tried yet)
    UNAVAILABLE = "unavailable"  # refused or unreachable: retrying
    HUNG = "hung"  # connected but no answer in time: retrying


@attrs.frozen
class TelemetryStatistics:
    queued: int  # accepted, not yet in a batch (in the channel or handed to the sink task)
    pending: int  # in the batch being written (or retried)
    written: int  # stored by the sink
    dropped: int  # not accepted: channel full, or recorded after close()
    failed: int  # rejected by the sink, or still unwritten at the flush deadline
    sink_available: bool  # False during an outage (sink_status is not ok)
    sink_status: SinkStatus
    last_error: str | None  # the sink's latest error, passwords masked
    last_error_at: str | None  # when, ISO 8601 in UTC


class Recorder:
    """The telemetry pipeline: ``record`` on the request path, the batching loop behind it.

    Made by ``serve_telemetry``; ``namespace`` and ``version`` are there for whoever
    builds the events, ``enabled`` tells it whether building them is worth it.
    """

    def __init__(self, config: TelemetryConfig, sink: Sink) -> None:
        self.namespace = config.namespace
        self.version = config.version
        self.enabled = config.enabled
        self._config = config
        self._sink = sink
        self._types = tuple(getattr(sink, "event_types", (HttpEvent,)))
        self._send, self._receive = trio.open_memory_channel[Event](config.queue_size)
        # Cancelled at flush_timeout after close(), so an outage cannot stall shutdown.
        self._drain = trio.CancelScope()
        self._batch: list[Event] = []
        self._batch_born = 0.0
        self._accepted = self._written = self._dropped = self._failed = 0
        self._outage: tuple[float, int] | None = None  # (since, dropped by then)
        self._status = SinkStatus.OK
        self._last_error: tuple[str, str] | None = None  # (message, when)

    def wants(self, event_type: type) -> bool:
        """Whether the sink takes events of ``event_type`` (others are not worth building)."""
        return self.enabled and event_type in self._types

    def record(self, event: Event) -> None:
        """Queue ``event`` for the sink; never waits, never raises. An event of a type
        the sink does not take is ignored (neither queued nor counted)."""
        if not isinstance(event, self._types):
            return
        try:
            self._send.send_nowait(event)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._dropped += 1
        else:
            self._accepted += 1

    def close(self) -> None:
        """Accept no more events; what is queued is flushed within ``flush_timeout``."""
        self._send.close()
        self._drain.deadline = min(
            self._drain.deadline, trio.current_time() + self._config.flush_timeout
        )

    def statistics(self) -> TelemetryStatistics:
        return TelemetryStatistics(
            # Counted, not read off the channel: an event handed straight to a waiting
            # sink task is in no buffer until that task runs.
            queued=self._accepted - self._written - self._failed - len(self._batch),
            pending=len(self._batch),
            written=self._written,
            dropped=self._dropped,
            failed=self._failed,
            sink_available=self._status is SinkStatus.OK,
            sink_status=self._status,
            last_error=self._last_error and self._last_error[0],
            last_error_at=self._last_error and self._last_error[1],
        )

    async def _run(self) -> None:
        """Write batches until the channel is closed and empty."""
        while True:
            if not self._batch:
                try:
                    self._batch.append(await self._receive.receive())
                except trio.EndOfChannel:
                    return
                self._batch_born = trio.current_time()
            await self._fill()
            await self._write()

    async def _fill(self) -> None:
        """Add events until the batch is full or ``flush_interval`` old."""
        batch, receive, size = self._batch, self._receive, self._config.batch_size
        with (
            trio.move_on_at(self._batch_born + self._config.flush_interval),
            contextlib.suppress(trio.EndOfChannel),
        ):
            while len(batch) < size:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    batch.append(await receive.receive())

    async def _write(self) -> None:
        """Hand the batch to the sink, retrying (same batch) while it is unavailable."""
        delay = RETRY_INITIAL
        while True:
            try:
                await self._sink.write_batch(self._batch)
            except (SinkUnavailable, OSError) as exc:
                self._outage_begins(exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            except Exception as exc:
                self._failed += len(self._batch)
                logger.error(
                    "telemetry sink %r rejected %d events: %s",
                    self._config.sink_name,
                    len(self._batch),
                    self._note(exc),
                )
            else:
                self._written += len(self._batch)
            self._outage_ends()
            self._batch = []
            return

    def _note(self, exc: Exception) -> str:
        """Remember ``exc`` as the last error (for health); its text, masked."""
        text = error_text(exc)
        when = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        self._last_error = (text, when)
        return text

    def _outage_begins(self, exc: Exception) -> None:
        self._status = SinkStatus.HUNG if isinstance(exc, SinkHung) else SinkStatus.UNAVAILABLE
        text = self._note(exc)
        if self._outage is None:
            self._outage = (trio.current_time(), self._dropped)
            logger.warning(
                "telemetry sink %r %s: %s; keeping events and retrying",
                self._config.sink_name,
                self._status,
                text,
            )

    def _outage_ends(self) -> None:
        self._status = SinkStatus.OK
        if self._outage is not None:
            since, dropped = self._outage
            self._outage = None
            logger.warning(
                "telemetry sink %r available again after %.1f s; %d events waited, "
                "%d dropped meanwhile (queue full)",
                self._config.sink_name,
                trio.current_time() - since,
                len(self._batch) + self._send.statistics().current_buffer_used,
                self._dropped - dropped,
            )

    def _give_up(self) -> None:
        """Count what is still unwritten (after the flush deadline) as failed."""
        lost = len(self._batch) + self._send.statistics().current_buffer_used
        self._batch = []
        self._receive.close()
        if lost:
            self._failed += lost
            logger.error("telemetry: %d events not written before the flush deadline", lost)


async def serve_telemetry(config: TelemetryConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the configured sink; ``task_status.started(recorder)`` once it is ready.

    Raises ``ConfigError`` before starting when the sink cannot be loaded or set up.
    Returns after ``recorder.close()`` once the queue is flushed (or ``flush_timeout``
    passed). If cancelled, the final flush still runs, shielded, for ``flush_timeout``.
    """
    sink = await open_sink(config)
    recorder = Recorder(config, sink)
    try:
        with recorder._drain:
            task_status.started(recorder)
            await recorder._run()
    finally:
        recorder.close()
        with trio.move_on_after(config.flush_timeout, shield=True):
            if not recorder._drain.cancelled_caught:
                await recorder._run()
            await sink.aclose()
        recorder._give_up()
        stats = recorder.statistics()
        logger.info(
            "telemetry (%s): %d events written, %d dropped, %d failed",
            config.sink_name,
            stats.written,
            stats.dropped,
            stats.failed,
        )
