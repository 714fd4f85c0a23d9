"""Where telemetry events go: the ``Sink`` protocol and loading a sink by name.

A sink is made by a *factory* ``(options, config) -> Sink``: ``options`` is the
``[telemetry.sink_options]`` table with ``FAUCET_TELEMETRY_SINK_OPTIONS`` and
``--telemetry-sink-option`` laid over it key by key (their values are strings), ``config``
the whole ``TelemetryConfig``.
A factory may be a class, a function, or an ``async`` function (to connect at start-up).
It raises ``ConfigError`` for bad options; faucet then refuses to start.

Only the configured sink is loaded, looked up in this order: the built-ins (``postgres``,
``stdout``, ``null``), the in-process registry (``register_sink``, for tests and embedding),
then the entry points of group ``faucet.sinks`` of installed packages.

The plugin API is ``__all__``: everything a sink needs is importable from here, and a
plugin that imports nothing else of faucet keeps working when faucet's insides move
(tests/test_layers.py holds the bundled example plugin to it).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

from faucet.config.settings import SINK_OPTIONS, SINK_OPTIONS_HOWTO, TelemetryConfig
from faucet.errors import ConfigError
from faucet.events import Event, HttpEvent, LogEvent

__all__ = [
    "ConfigError",
    "Event",
    "HttpEvent",
    "LogEvent",
    "Sink",
    "SinkError",
    "SinkFactory",
    "SinkHung",
    "SinkUnavailable",
    "TelemetryConfig",
    "available_sinks",
    "register_sink",
    "unregister_sink",
]

ENTRY_POINT_GROUP = "faucet.sinks"
_BUILTINS = {
    "postgres": "faucet.sinks.postgres:PostgresSink.open",
    "stdout": "faucet.sinks.stdout:StdoutSink",
    "null": "faucet.sinks.null:NullSink",
}
_REGISTRY: dict[str, SinkFactory] = {}


class Sink(Protocol):
    """Receives batches from faucet's one sink task, never concurrently.

    A sink may declare ``event_types``, the event classes it stores (e.g.
    ``(HttpEvent, LogEvent)``); without it, it is given ``HttpEvent``s only, so a sink
    written before ``LogEvent`` existed keeps working unchanged.
    """

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Store ``events`` (in the order recorded, types mixed) durably, or raise.

        Raise ``SinkUnavailable`` (or let an ``OSError`` through) when the destination is
        unreachable for now, ``SinkHung`` when it stopped answering: faucet keeps the
        batch and retries it with backoff. Any other exception means this batch cannot be
        stored: its events are counted as failed. A blocking client must run in
        ``trio.to_thread.run_sync(..., abandon_on_cancel=True)``, so that the shutdown
        flush deadline can cut a call the destination never answers.
        """

    async def aclose(self) -> None:
        """Release connections and files; called once, after the last batch."""


SinkFactory = Callable[[Mapping[str, Any], "TelemetryConfig"], "Sink | Awaitable[Sink]"]


class SinkError(Exception):
    """A sink could not store a batch; the message is safe to log."""


class SinkUnavailable(SinkError):
    """The destination is unreachable for now; the same batch should be retried."""


class SinkHung(SinkUnavailable):
    """The destination took the connection but did not answer in time (a timeout rather
    than a refusal); retried like ``SinkUnavailable``, reported apart in health."""


def register_sink(name: str, factory: SinkFactory) -> None:
    """Make ``factory`` loadable as ``name`` without installing a package."""
    _REGISTRY[name] = factory


def unregister_sink(name: str) -> None:
    _REGISTRY.pop(name, None)


def available_sinks() -> list[str]:
    """Every name ``load_sink`` would accept: built-ins, registered, installed."""
    installed = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return [*_BUILTINS, *sorted((_REGISTRY.keys() | installed) - _BUILTINS.keys())]


def load_sink(name: str) -> SinkFactory:
    """The factory registered as ``name``; ConfigError if unknown or it fails to import."""
    if name in _BUILTINS:
        return _resolve(_BUILTINS[name])
    if name in _REGISTRY:
        return _REGISTRY[name]
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise ConfigError(
            f"telemetry.sink = {name!r}: unknown sink; available: {', '.join(available_sinks())}"
            f" (a plugin registers entry point group {ENTRY_POINT_GROUP!r})"
        )
    (entry_point, *_) = found
    try:
        return entry_point.load()
    except Exception as exc:
        raise ConfigError(
            f"telemetry.sink = {name!r}: cannot load plugin {entry_point.value!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


async def open_sink(config: TelemetryConfig) -> Sink:
    """Load and create the configured sink; ConfigError when that is impossible."""
    try:
        created = load_sink(config.sink_name)(config.sink_options, config)
        return await created if inspect.isawaitable(created) else created
    except ConfigError as exc:
        # A sink words what its options lack; where options are set is faucet's to say.
        raise ConfigError([f"{line}; {SINK_OPTIONS_HOWTO}" if line.startswith(SINK_OPTIONS)
                           else line for line in exc.problems]) from None


def _resolve(target: str) -> SinkFactory:
    module, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj
