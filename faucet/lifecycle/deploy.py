"""Each app's generations of workers: the first at start-up, and a new one per reload.

A reload (SIGHUP, or ``faucet reload``) reads every setting and file again. Invalid: the
problems are logged and nothing changes. Valid: each app whose settings or files changed
(a digest of both) gets a new generation of workers; once all of them are online it goes
live (new requests, new Shiny sessions, and requests still queued go to it) and the old
generation drains: requests in flight finish, Shiny sessions stay on their R process
until they end or ``drain_timeout`` passes (then their pages reload onto the new code),
and its processes stop. A new generation that does not come online (a syntax error in
the new plumber.R) is stopped and the old one goes on serving. Apps added to or removed
from frouter.toml are started or drained; apps that did not change keep their workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio
from attrs import frozen

from faucet.config.app_kinds import KINDS
from faucet.config.settings import Config
from faucet.errors import ConfigError
from faucet.events import LogEvent
from faucet.lifecycle.plan import Plan, PlannedApp, check_plan
from faucet.lifecycle.retire import drain_and_stop
from faucet.lifecycle.slot import free_port, run_slot
from faucet.logs import worker_logger
from faucet.pool.backend import Backend
from faucet.pool.dispatch import Dispatcher
from faucet.pool.scaler import scale_workers
from faucet.pool.sticky import StickyCookie
from faucet.proxy.mount import Generation, Mount
from faucet.proxy.router import RouteTable
from faucet.proxy.shiny.session_host import SessionHost
from faucet.proxy.upstream import UpstreamPool
from faucet.telemetry.recorder import Recorder
from faucet.workers.app_events import WorkerEvents
from faucet.workers.supervisor import supervise_worker

log = logging.getLogger("faucet")
RELOADED = "reloaded"  # why an old generation is drained, as health shows it
ONLINE_CHECK = 0.25  # seconds between looks for a new worker that failed to start
# Settings a running faucet cannot take without a restart (a reload warns about them).
_APP_KEYS = frozenset({"workers", "strategy", "type", "dir", "app_dir", "qmd", "rscript",
                       "quarto", "uv", "max_rps", "min_workers", "route", "conf"})
_FILE_CAP = 20_000  # files looked at per app folder for its digest
# watch: a look at the app folders every WATCH_POLL seconds (file names, sizes and
# times, in a thread); a reload once they have not changed for WATCH_QUIET seconds.
WATCH_POLL = 1.0
WATCH_QUIET = 0.5


@frozen
class Snapshot:
    """Everything a start reads: the settings, the apps, and router mode's routes."""

    config: Config
    plan: Plan
    routes: RouteTable | None


def new_generation(config: Config, app: PlannedApp, number: int) -> Generation:
    """The backends, pools and dispatcher of one deploy of ``app`` (nothing started)."""
    name = app.route.route if app.route else None
    backends = [Backend(worker_id=i, port=free_port(), route=name, generation=number)
                for i in range(1, app.workers + 1)]
    dispatcher = Dispatcher(backends, app.strategy, max_inflight=config.max_inflight,
                            max_queue=config.max_queue, sticky_grace=config.sticky_grace)
    return Generation(number, dispatcher, {b.index: UpstreamPool(b) for b in backends})


def new_mount(config: Config, app: PlannedApp) -> Mount:
    name = app.route.route if app.route else None
    kind = KINDS[app.spec.kind]
    return Mount(name, new_generation(config, app, 0), websockets=kind.websockets,
                 cookie=StickyCookie.for_route(name), session_app=kind.sessions)


def build_mounts(config: Config, plan: Plan) -> list[Mount]:
    return [new_mount(config, app) for app in plan.apps]


def app_digest(app: PlannedApp) -> str:
    """What decides whether a reload replaces an app's workers: its settings, and the
    name, size, modification time and content of every file in its folder."""
    digest = hashlib.sha256(repr(app).encode())
    for path, relative, stat in _app_files(Path(app.spec.workdir)):
        try:
            digest.update(f"{relative}\0{stat.st_size}\0".encode())
            digest.update(path.read_bytes() if stat.st_size <= 1 << 20
                          else str(stat.st_mtime_ns).encode())
        except OSError:
            continue  # gone meanwhile
    return digest.hexdigest()


def folder_stamp(app: PlannedApp) -> str:
    """What ``watch`` compares from one look to the next: the name, size and
    modification time of every file in the app's folder (no content: it looks every
    second; the reload it asks for decides by ``app_digest``)."""
    digest = hashlib.sha256()
    for _, relative, stat in _app_files(Path(app.spec.workdir)):
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _app_files(root: Path):
    """(path, path relative to ``root``, stat) of the files in an app's folder, in a
    stable order, hidden folders and ``__pycache__`` skipped, at most ``_FILE_CAP``."""
    seen = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            seen += 1
            if seen > _FILE_CAP:
                return
            path = Path(folder, name)
            try:
                stat = path.stat()
            except OSError:
                continue  # gone meanwhile
            yield path, path.relative_to(root), stat


async def run_generation(config: Config, recorder: Recorder, app: PlannedApp,
                         mount: Mount, generation: Generation, sessions: SessionHost, *,
                         temp_root: Path | None = None,
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run a generation's workers until cancelled (which stops their process groups);
    started once every first process is spawned. Each worker runs in its slot
    (faucet.lifecycle.slot), which replaces it when it is recycled. ``temp_root``: where each
    worker process gets its temporary directory."""
    retire = partial(drain_and_stop, config, sessions)
    supervise = partial(run_slot, mount, generation,
                        partial(_supervise, config, recorder, app, temp_root), retire)
    async with trio.open_nursery() as nursery:
        if app.scaling:
            await nursery.start(scale_workers, generation.dispatcher, app.scaling, supervise)
        else:
            for backend in generation.backends:
                await nursery.start(supervise, backend)
        task_status.started()


async def _supervise(config: Config, recorder: Recorder, app: PlannedApp,
                     temp_root: Path | None, backend: Backend, *, recycled,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """One worker process of an app's slot, restarted until cancelled; ``recycled`` is
    told once it is due for replacement."""
    await supervise_worker(backend, app.spec, config,
                           worker_log=worker_logger(backend.worker_id, backend.route),
                           events=worker_events(recorder, backend), temp_root=temp_root,
                           recycled=recycled, task_status=task_status)


def worker_events(recorder: Recorder, backend: Backend) -> WorkerEvents | None:
    """The worker's event recorder, None when the sink takes no ``LogEvent``s."""
    if not recorder.wants(LogEvent):
        return None
    return WorkerEvents(recorder.record, namespace=recorder.namespace,
                        version=recorder.version, worker_id=backend.worker_id,
                        worker_route=backend.route)


class Reloads:
    """Requests to reload (SIGHUP, ``faucet reload``); several before one is done count
    once."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[None](1)

    def request(self) -> None:
        try:
            self._send.send_nowait(None)
        except trio.WouldBlock:
            pass  # one is pending already

    def __aiter__(self):
        return self._receive.__aiter__()


@attrs.define(eq=False)
class _Deployed:
    app: PlannedApp
    mount: Mount
    digest: str


class Deployer:
    """Owns every app's generations of workers and their processes' cancel scopes."""

    def __init__(self, config: Config, plan: Plan, mounts: Sequence[Mount], recorder: Recorder,
                 sessions: SessionHost, nursery: trio.Nursery, temp_root: Path | None = None):
        self.config = config
        self.temp_root = temp_root  # where worker processes get their temporary directories
        self.recorder = recorder
        self.sessions = sessions
        self.nursery = nursery
        self.apps = {_key(app): _Deployed(app, mount, app_digest(app))
                     for app, mount in zip(plan.apps, mounts, strict=True)}
        self.scopes: dict[int, trio.CancelScope] = {}  # by id() of the generation
        self.reloads = 0
        self.last_error: str | None = None
        self.install: Callable[[list[Mount], RouteTable | None], None] = lambda m, r: None
        # Told of each new generation's workers before they start (the dashboard).
        self.watch: Callable[[list[Backend]], None] = lambda backends: None

    async def start(self) -> None:
        """Start every app's first generation."""
        for deployed in self.apps.values():
            await self._start(deployed.app, deployed.mount, deployed.mount.live)

    def status(self) -> dict:
        """Health's view: how many reloads took effect and why the last one failed."""
        return {"reloads": self.reloads, "last_error": self.last_error}

    async def serve_reloads(self, reloads: Reloads, load: Callable[[], Snapshot], *,
                            task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for _ in reloads:
            await self.reload(load)

    async def watch_folders(self, reloads: Reloads, *, poll: float = WATCH_POLL,
                            quiet: float = WATCH_QUIET,
                            task_status=trio.TASK_STATUS_IGNORED) -> None:
        """``watch`` (development): look at every app's folder each ``poll`` seconds (in
        a thread: a folder walk) and ask for a reload once what changed has stayed
        unchanged for ``quiet`` seconds, so an editor saving several files, or a
        checkout, makes one reload. A reload that fails (the new code does not start) is
        not asked for again until the files change again."""

        def stamps(apps: list[tuple[str | None, PlannedApp]]) -> dict:
            return {key: folder_stamp(app) for key, app in apps}

        def apps() -> list[tuple[str | None, PlannedApp]]:
            return [(key, deployed.app) for key, deployed in self.apps.items()]

        seen = requested = await trio.to_thread.run_sync(stamps, apps())
        changed_at = trio.current_time()
        task_status.started()
        while True:
            await trio.sleep(poll)
            now = await trio.to_thread.run_sync(stamps, apps())
            if now != seen:  # still changing, or just changed: wait for quiet
                seen, changed_at = now, trio.current_time()
            elif now != requested and trio.current_time() - changed_at >= quiet:
                names = [_name(key) for key in now if now[key] != requested.get(key)]
                log.info("watch: files changed in %s; reloading", ", ".join(names) or "an app")
                requested = now
                reloads.request()

    async def reload(self, load: Callable[[], Snapshot]) -> bool:
        """Read everything again and deploy what changed; False when nothing could."""
        log.info("reload: reading the settings and apps again")
        try:
            loaded = await trio.to_thread.run_sync(load)
            check_plan(loaded.plan)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            return self._failed("the settings have problems (see the log); "
                                "faucet goes on as before")
        self._warn_fixed(loaded.config)
        wanted = {_key(app): app for app in loaded.plan.apps}
        digests = {key: app_digest(app) for key, app in wanted.items()}
        changed = [key for key, app in wanted.items()
                   if key not in self.apps or self.apps[key].digest != digests[key]]
        removed = [key for key in self.apps if key not in wanted]
        if not changed and not removed:
            log.info("reload: nothing changed")
            return True
        fresh = {}  # key -> (mount, new generation) once online
        for key in changed:
            app = wanted[key]
            old = self.apps.get(key)
            if old is not None:
                mount = old.mount
                generation = new_generation(loaded.config, app, mount.live.number + 1)
            else:
                mount = new_mount(loaded.config, app)
                generation = mount.live
            fresh[key] = (mount, generation)
        failure = await self._bring_online(wanted, fresh)
        if failure is not None:
            return self._failed(failure)
        self._go_live(loaded, wanted, digests, fresh, removed)
        self.reloads += 1
        self.last_error = None
        return True

    async def _bring_online(self, wanted, fresh) -> str | None:
        """Start every new generation and wait until all their workers are online; on a
        failure, stop them all and say why."""
        for key, (mount, generation) in fresh.items():
            await self._start(wanted[key], mount, generation)
        failure = None
        timeout = self.config.startup_timeout + 5
        with trio.move_on_after(timeout) as clock:
            for key, (_, generation) in fresh.items():
                failure = await _online(generation, wanted[key])
                if failure is not None:
                    break
        if clock.cancelled_caught:
            failure = f"the new workers were not online within {timeout:g}s"
        if failure is None:
            return None
        for _, generation in fresh.values():
            self._stop(generation)
        return failure

    def _go_live(self, loaded: Snapshot, wanted, digests, fresh, removed) -> None:
        """Put the new generations live and drain the old ones, with no checkpoint in
        between: a request sees either the old mounts and routes or the new."""
        for key, (mount, generation) in fresh.items():
            old = self.apps.get(key)
            if old is not None:
                self._retire(mount, mount.live)
                mount.live = generation
                log.info("%s: generation %d is live; generation %d drains",
                         _name(key), generation.number, generation.number - 1)
            else:
                log.info("%s: added", _name(key))
            self.apps[key] = _Deployed(wanted[key], mount, digests[key])
        for key in removed:
            deployed = self.apps.pop(key)
            self._retire(deployed.mount, deployed.mount.live)
            log.info("%s: removed; its workers drain", _name(key))
        for key, app in wanted.items():  # routes that did not change: their settings
            self.apps[key].app = app
        self.install([self.apps[_key(app)].mount for app in loaded.plan.apps], loaded.routes)

    def _retire(self, mount: Mount, generation: Generation) -> None:
        mount.retired.append(generation)
        generation.dispatcher.retire()
        for backend in generation.backends:
            backend.drain(RELOADED)
        self.nursery.start_soon(self._drain, mount, generation)

    async def _drain(self, mount: Mount, generation: Generation) -> None:
        """The retired generation's requests and sessions end (faucet.lifecycle.retire), then its
        processes stop."""
        await drain_and_stop(self.config, self.sessions, mount, generation,
                             partial(self._stop, generation))
        log.info("%s: generation %d drained and stopped", mount.route or "app",
                 generation.number)

    async def _start(self, app: PlannedApp, mount: Mount, generation: Generation) -> None:
        log.info("%s: %s %s worker(s), strategy %s, in %s (generation %d)",
                 app.route.route if app.route else "app", _pool_size(app), app.spec.kind,
                 _strategy_shown(app), app.spec.workdir, generation.number)
        self.watch(generation.backends)
        scope = self.scopes[id(generation)] = trio.CancelScope()

        async def run(task_status=trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await run_generation(self.config, self.recorder, app, mount, generation,
                                     self.sessions, temp_root=self.temp_root,
                                     task_status=task_status)

        await self.nursery.start(run)

    def _stop(self, generation: Generation) -> None:
        scope = self.scopes.pop(id(generation), None)
        if scope is not None:
            scope.cancel()

    def _failed(self, why: str) -> bool:
        log.error("reload failed: %s", why)
        self.last_error = why
        return False

    def _warn_fixed(self, new: Config) -> None:
        """Name the settings that changed but take a restart."""
        old = self.config
        fixed = [field.name for field in attrs.fields(Config)
                 if field.name not in _APP_KEYS
                 and getattr(old, field.name) != getattr(new, field.name)]
        if fixed:
            log.warning("reload: %s changed but take(s) effect only when faucet restarts",
                        ", ".join(fixed))


async def _online(generation: Generation, app: PlannedApp) -> str | None:
    """Until every worker a new generation starts with is online (None), or one of them
    has failed to start (why: its last failure, such as R's error)."""
    starting = (generation.backends[:app.scaling.min_workers] if app.scaling
                else generation.backends)
    while True:
        failed = [b for b in starting if b.restarts > 0]
        if failed:
            backend = failed[0]
            return (f"{_name(_key(app))}: the new worker {backend.worker_id} did not start "
                    f"({backend.last_failure}); the old workers go on serving")
        if all(b.online for b in starting):
            return None
        with trio.move_on_after(ONLINE_CHECK):  # a failed start fires no change
            await generation.dispatcher.wait_changed()


def _key(app: PlannedApp) -> str | None:
    return app.route.route if app.route else None


def _name(key: str | None) -> str:
    return key or "app"


def _pool_size(app: PlannedApp) -> str:
    scaling = app.scaling
    return f"{scaling.min_workers} to {app.workers}" if scaling else str(app.workers)


def _strategy_shown(app: PlannedApp) -> str:
    scaling = app.scaling
    return f"{app.strategy} (max_rps {scaling.max_rps:g})" if scaling else str(app.strategy)
