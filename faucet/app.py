"""The root nursery: telemetry, the workers and the proxy, and the shutdown sequence.

Shutdown, graceful: stop accepting and let in-flight requests finish (the front drains up
to ``shutdown_timeout``), then stop the workers (SIGTERM to each process group, SIGKILL
after a grace), then flush telemetry (shielded, its own deadline). Immediate: cancel the
proxy and workers at once, still flushing telemetry. A second request forces immediate.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import attrs
import trio
from attrs import frozen

from faucet.config.settings import Config, flag_name
from faucet.edge.fd_limit import connection_budget, raise_open_file_limit
from faucet.edge.front import Limits
from faucet.edge.front import serve as serve_front
from faucet.edge.hypercorn_adapter import hypercorn_config, install_websocket_stream
from faucet.errors import ConfigError, leaves
from faucet.events import LogEvent
from faucet.http.ws_budget import WebSocketBudget
from faucet.lifecycle.deploy import Deployer, Reloads, Snapshot, build_mounts
from faucet.lifecycle.plan import Plan, check_plan
from faucet.proxy.handler import Proxy
from faucet.proxy.insight import Insight, InsightApp
from faucet.proxy.mount import Mount
from faucet.proxy.shiny.session_events import SessionEvents
from faucet.proxy.shiny.session_host import SessionHost, SessionSettings
from faucet.telemetry.recorder import Recorder, serve_telemetry

log = logging.getLogger("faucet")
_BIND_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)
RUN_DIRECTORY_REMOVAL = 30.0  # seconds the run's temporary directory may take to remove


@frozen
class Serving:
    """What ``serve`` reports once it accepts connections."""

    binds: list[str]
    mounts: list[Mount]
    recorder: object
    deployer: Deployer


class Shutdown:
    """Asks a running ``serve`` to stop: gracefully first, at once when asked again.

    ``draining`` is set at the first request: readiness fails and every response says
    ``Connection: close``, while requests are still served for ``delay`` seconds (so a
    load balancer takes faucet out before its listener closes); ``stopping`` follows."""

    def __init__(self, mode: str = "graceful", delay: float = 0.0):
        self.mode = mode
        self.delay = delay
        self.draining = trio.Event()
        self.stopping = trio.Event()
        self._front: trio.CancelScope | None = None
        self._requests = 0

    def request(self) -> None:
        self._requests += 1
        self.draining.set()
        if self.delay <= 0 or self._requests > 1 or self.mode == "immediate":
            self.stopping.set()
        if self.mode == "immediate" or self._requests > 1:
            self.force()

    async def stop_after_delay(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Once draining, serve on for ``delay`` seconds, then stop."""
        task_status.started()
        await self.draining.wait()
        await trio.sleep(self.delay)
        self.stopping.set()

    def force(self) -> None:
        if self._front is not None:
            self._front.cancel()

    def attach(self, scope: trio.CancelScope) -> None:
        self._front = scope
        if self.stopping.is_set() and self.mode == "immediate":
            scope.cancel()


async def serve(config: Config, plan: Plan, shutdown: Shutdown, *, routes=None,
                reloads: Reloads | None = None, load: Callable[[], Snapshot] | None = None,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run faucet until ``shutdown`` is requested; started with a ``Serving``. With
    ``reloads`` and ``load``, each reload request deploys what ``load()`` reads anew."""
    check_plan(plan)
    mounts = build_mounts(config, plan)
    async with trio.open_nursery() as root, _run_directory() as temp_root:
        recorder = await root.start(serve_telemetry, config.telemetry)
        try:
            async with trio.open_nursery() as front:
                shutdown.attach(front.cancel_scope)
                await front.start(shutdown.stop_after_delay)
                websockets = WebSocketBudget(config.websocket_memory,
                                             config.max_websockets,
                                             config.max_websockets_per_client)
                sessions = SessionHost(SessionSettings.of(config), shutdown.stopping, websockets,
                                       session_events(recorder))
                # Before the workers start: the dashboard and start durations see them.
                insight = await _start_insight(front, config, mounts, recorder, sessions,
                                               shutdown)
                deployer = Deployer(config, plan, mounts, recorder, sessions, front,
                                    temp_root)
                await deployer.start()
                await front.start(sessions.run)
                proxy = Proxy(config, mounts, recorder, shutdown.stopping, websockets, sessions,
                              routes=routes, deploy_status=deployer.status, insight=insight,
                              draining=shutdown.draining)
                deployer.install = proxy.install
                if insight is not None:
                    deployer.watch = insight.workers.watch
                binds = await front.start(_run_proxy, proxy, config, shutdown, front.cancel_scope)
                log.info("faucet listening on %s", ", ".join(binds))
                if reloads is not None and load is not None:
                    await front.start(deployer.serve_reloads, reloads, load)
                    if config.watch:
                        await front.start(deployer.watch_folders, reloads)
                        log.info("watching the app folders: a change reloads its app")
                task_status.started(Serving(binds, mounts, recorder, deployer))
        finally:
            recorder.close()


@contextlib.asynccontextmanager
async def _run_directory() -> AsyncIterator[Path]:
    """This run's temporary directory (``faucet-XXXXXXXX`` under faucet's own TMPDIR),
    which holds each worker process's own; removed, whatever is left in it, once every
    worker has stopped."""
    path = Path(tempfile.mkdtemp(prefix="faucet-"))
    try:
        yield path
    finally:
        with trio.move_on_after(RUN_DIRECTORY_REMOVAL, shield=True):
            await trio.to_thread.run_sync(partial(shutil.rmtree, path, ignore_errors=True))


async def _start_insight(nursery: trio.Nursery, config: Config, mounts: list[Mount],
                         recorder: Recorder, sessions: SessionHost,
                         shutdown: Shutdown) -> Insight | None:
    """Metrics and the dashboard (None with ``metrics = false``): the dashboard's clock,
    and their own listener when ``metrics_listen`` is set."""
    if not config.metrics:
        return None
    insight = Insight(mounts, recorder, sessions, faucet_version())
    await nursery.start(insight.run)
    if config.metrics_listen:
        binds = await nursery.start(_serve_insight, insight, config, shutdown)
        log.info("metrics and dashboard on %s", ", ".join(binds))
    return insight


def session_events(recorder: Recorder) -> SessionEvents | None:
    """Shiny sessions' events for the recorder, None when the sink takes no LogEvents."""
    if not recorder.wants(LogEvent):
        return None
    return SessionEvents(recorder.record, namespace=recorder.namespace,
                         version=recorder.version)


def faucet_version() -> str:
    """``faucet --version`` and ``faucet_build_info``."""
    try:
        return importlib.metadata.version("faucet-r")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"


def front_limits(config: Config, open_files: int) -> Limits:
    """The front door's limits from the config; ``max_connections`` lowered (with a
    warning) to what ``open_files`` descriptors can carry."""
    budget = connection_budget(open_files)
    connections = config.max_connections
    if connections > budget:
        log.warning("max_connections = %d: the open-file limit (%d) carries only %d client "
                    "connections; using %d (raise `ulimit -n` to allow more)",
                    connections, open_files, budget, budget)
        connections = budget
    return Limits(max_body=config.max_body_size, max_connections=connections,
                  head_timeout=config.head_timeout, send_timeout=config.send_timeout,
                  h2c=config.h2c, h2_max_streams=config.h2_max_streams,
                  h2_max_resets=config.h2_max_resets)


async def _run_proxy(proxy: Proxy, config: Config, shutdown: Shutdown,
                     front: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve until shutdown has drained the connections, then stop the workers."""
    with _listening("host", config.host):
        install_websocket_stream(proxy.websockets)
        limits = front_limits(config, raise_open_file_limit())
        await serve_front(proxy, hypercorn_config(config), shutdown.stopping, limits,
                          closing=shutdown.draining, task_status=task_status)
    log.info("front door closed; stopping workers")
    front.cancel()


@contextlib.contextmanager
def _listening(key: str, address: str) -> Iterator[None]:
    """A failure to listen on ``address`` (setting ``key``) as a ConfigError naming it."""
    try:
        yield
    except* OSError as group:
        reasons = [e.strerror for e in leaves(group) if e.errno in _BIND_ERRORS]
        if not reasons:
            raise
        raise ConfigError(f"{key} = {address!r}: cannot listen there: {reasons[0]}; "
                          f"choose another {flag_name(key)}") from None


async def _serve_insight(insight: Insight, config: Config, shutdown: Shutdown, *,
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The metrics and the dashboard on ``metrics_listen``, until shutdown."""
    with _listening("metrics_listen", config.metrics_listen):
        own = hypercorn_config(attrs.evolve(config, host=config.metrics_listen))
        await serve_front(InsightApp(insight), own, shutdown.stopping,
                          Limits(max_connections=64), task_status=task_status)
