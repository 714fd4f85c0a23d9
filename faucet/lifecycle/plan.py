"""What to run: each app's workers, strategy and scaling, from the settings (no I/O
beyond looking at the app folders)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from attrs import frozen

from faucet.config.app_kinds import strategy_for
from faucet.config.cpus import available_cpus
from faucet.config.routes import RouteConfig
from faucet.config.settings import Config
from faucet.config.strategy import Strategy
from faucet.errors import ConfigError
from faucet.pool.autoscale import Policy
from faucet.workers.command import AppSpec, check_executable, resolve_kind

log = logging.getLogger("faucet")


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
    kind = resolve_kind(config.type, workdir, config.app_dir, qmd=config.qmd)
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


