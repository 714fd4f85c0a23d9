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
import socket
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio
from attrs import frozen

from faucet.config.app_kinds import KINDS, strategy_for
from faucet.config.cpus import available_cpus
from faucet.config.routes import RouteConfig
from faucet.config.settings import Config, flag_name
from faucet.config.strategy import Strategy
from faucet.edge.fd_limit import connection_budget, raise_open_file_limit
from faucet.edge.front import Limits
from faucet.edge.front import serve as serve_front
from faucet.edge.hypercorn_adapter import hypercorn_config, install_websocket_stream
from faucet.errors import ConfigError, leaves
from faucet.events import LogEvent
from faucet.http.ws_budget import WebSocketBudget
from faucet.logs import worker_logger
from faucet.pool.autoscale import Policy
from faucet.pool.backend import Backend
from faucet.pool.dispatch import Dispatcher
from faucet.pool.scaler import scale_workers
from faucet.pool.sticky import StickyCookie
from faucet.proxy.handler import Proxy
from faucet.proxy.insight import Insight, InsightApp
from faucet.proxy.mount import Mount
from faucet.proxy.shiny.session_host import SessionHost
from faucet.proxy.upstream import UpstreamPool
from faucet.telemetry.recorder import Recorder, serve_telemetry
from faucet.workers.app_events import WorkerEvents
from faucet.workers.command import AppSpec, check_executable, resolve_kind
from faucet.workers.supervisor import supervise_worker

log = logging.getLogger("faucet")
_BIND_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


@frozen
class Serving:
    """What ``serve`` reports once it accepts connections."""

    binds: list[str]
    mounts: list[Mount]
    recorder: object


@frozen
class PlannedApp:
    """One app to run: what its workers run, how many, and how requests are spread."""

    route: RouteConfig | None  # None in start mode
    spec: AppSpec
    strategy: Strategy
    workers: int
    scaling: Policy | None = None  # rps: workers started and stopped with the load


@frozen
class Plan:
    """What to run: every app, in route order."""

    apps: list[PlannedApp]


def plan_start(config: Config) -> Plan:
    """``faucet start``: one app from --dir/--type."""
    workdir = Path(config.dir).resolve()
    kind = resolve_kind(config.type, workdir, config.app_dir)
    spec = _spec(config, kind, workdir, config.app_dir, config.qmd)
    strategy = _strategy(kind, Strategy(config.strategy) if config.strategy else None, "strategy")
    scaling = _scaling(strategy, config, config)
    return Plan([PlannedApp(None, spec, strategy, config.workers, scaling)])


def plan_router(config: Config, routes: Sequence[RouteConfig]) -> Plan:
    """``faucet router``: one app per ``[[route]]``; workdirs are already resolved."""
    apps = []
    for index, route in enumerate(routes):
        spec = _spec(config, route.server_type, Path(route.workdir), route.app_dir, route.qmd)
        strategy = _strategy(route.server_type, route.strategy, f"route[{index}].strategy")
        scaling = _scaling(strategy, route, config)
        apps.append(PlannedApp(route, spec, strategy, route.workers, scaling))
    return Plan(apps)


def _scaling(strategy: Strategy, app: Config | RouteConfig, config: Config) -> Policy | None:
    """An rps app's autoscaling (from its own settings: the top level in start mode, its
    ``[[route]]`` in router mode; both checked to have max_rps), else None. Workers start
    at most one per CPU at a time: starting R is CPU-bound."""
    if not strategy.scales:
        return None
    assert app.max_rps is not None
    return Policy(app.max_rps, app.min_workers, app.workers, config.scale_down_after,
                  max_starting=available_cpus())


def _strategy(kind: str, chosen: Strategy | None, key: str) -> Strategy:
    strategy, warning = strategy_for(kind, chosen, key)
    if warning:
        log.warning("%s", warning)
    return strategy


def _spec(config: Config, kind: str, workdir: Path, app_dir, qmd) -> AppSpec:
    return AppSpec(kind=kind, workdir=workdir, app_dir=app_dir, qmd=qmd,
                   rscript=config.rscript, quarto=config.quarto, uv=config.uv)


def check_plan(plan: Plan) -> None:
    problems = []
    for app in plan.apps:
        try:
            check_executable(app.spec)
        except ConfigError as exc:
            problems += [p for p in exc.problems if p not in problems]
    if problems:
        raise ConfigError(problems)


def free_port() -> int:
    """A loopback port nobody listens on now; the worker keeps it across restarts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_mounts(config: Config, plan: Plan) -> list[Mount]:
    mounts = []
    for app in plan.apps:
        name = app.route.route if app.route else None
        backends = [Backend(worker_id=i, port=free_port(), route=name)
                    for i in range(1, app.workers + 1)]
        dispatcher = Dispatcher(backends, app.strategy, max_inflight=config.max_inflight,
                                max_queue=config.max_queue, sticky_grace=config.sticky_grace)
        mounts.append(Mount(name, dispatcher, [UpstreamPool(b) for b in backends],
                            websockets=KINDS[app.spec.kind].websockets,
                            cookie=StickyCookie.for_route(name),
                            session_app=KINDS[app.spec.kind].sessions))
    return mounts


class Shutdown:
    """Asks a running ``serve`` to stop: gracefully first, at once when asked again."""

    def __init__(self, mode: str = "graceful"):
        self.mode = mode
        self.stopping = trio.Event()
        self._front: trio.CancelScope | None = None
        self._requests = 0

    def request(self) -> None:
        self._requests += 1
        self.stopping.set()
        if self.mode == "immediate" or self._requests > 1:
            self.force()

    def force(self) -> None:
        if self._front is not None:
            self._front.cancel()

    def attach(self, scope: trio.CancelScope) -> None:
        self._front = scope
        if self.stopping.is_set() and self.mode == "immediate":
            scope.cancel()


async def serve(config: Config, plan: Plan, shutdown: Shutdown, *, routes=None,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run faucet until ``shutdown`` is requested; started with a ``Serving``."""
    check_plan(plan)
    mounts = build_mounts(config, plan)
    async with trio.open_nursery() as root:
        recorder = await root.start(serve_telemetry, config.telemetry)
        try:
            async with trio.open_nursery() as front:
                shutdown.attach(front.cancel_scope)
                websockets = WebSocketBudget(config.websocket_memory,
                                             config.max_websockets)
                sessions = SessionHost(config, shutdown.stopping, websockets)
                # Before the workers start: the dashboard and start durations see them.
                insight = await _start_insight(front, config, mounts, recorder, sessions,
                                               shutdown)
                for mount, app in zip(mounts, plan.apps, strict=True):
                    log.info("%s: %s %s worker(s), strategy %s, in %s",
                             app.route.route if app.route else "app", _pool_size(app),
                             app.spec.kind, _strategy_shown(app), app.spec.workdir)
                    supervise = partial(_supervise, config, recorder, app.spec)
                    if app.scaling:
                        await front.start(scale_workers, mount.dispatcher, app.scaling,
                                          supervise)
                        continue
                    for backend in mount.backends:
                        await front.start(supervise, backend)
                await front.start(sessions.run)
                proxy = Proxy(config, mounts, recorder, shutdown.stopping, websockets, sessions,
                              routes=routes, insight=insight)
                binds = await front.start(_run_proxy, proxy, config, shutdown, front.cancel_scope)
                log.info("faucet listening on %s", ", ".join(binds))
                task_status.started(Serving(binds, mounts, recorder))
        finally:
            recorder.close()


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


def faucet_version() -> str:
    """``faucet --version`` and ``faucet_build_info``."""
    try:
        return importlib.metadata.version("faucet-r")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"


async def _supervise(config: Config, recorder: Recorder, spec: AppSpec, backend: Backend, *,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """One worker of an app, for as long as it runs (a fixed pool's, or the scaler's)."""
    await supervise_worker(backend, spec, config,
                           worker_log=worker_logger(backend.worker_id, backend.route),
                           events=worker_events(recorder, backend), task_status=task_status)


def worker_events(recorder: Recorder, backend: Backend) -> WorkerEvents | None:
    """The worker's event recorder, None when the sink takes no ``LogEvent``s."""
    if not recorder.wants(LogEvent):
        return None
    return WorkerEvents(recorder.record, namespace=recorder.namespace,
                        version=recorder.version, worker_id=backend.worker_id,
                        worker_route=backend.route)


def _pool_size(app: PlannedApp) -> str:
    scaling = app.scaling
    return f"{scaling.min_workers} to {app.workers}" if scaling else str(app.workers)


def _strategy_shown(app: PlannedApp) -> str:
    scaling = app.scaling
    return f"{app.strategy} (max_rps {scaling.max_rps:g})" if scaling else str(app.strategy)


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
                  head_timeout=config.head_timeout, send_timeout=config.send_timeout)


async def _run_proxy(proxy: Proxy, config: Config, shutdown: Shutdown,
                     front: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve until shutdown has drained the connections, then stop the workers."""
    with _listening("host", config.host):
        install_websocket_stream(proxy.websockets)
        limits = front_limits(config, raise_open_file_limit())
        await serve_front(proxy, hypercorn_config(config), shutdown.stopping, limits,
                          task_status=task_status)
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
