"""The ``[[route]]`` tables of router mode: their record, their checks, frouter.toml.

The tables come from the Rust server's ``frouter.toml`` (read unchanged, ``load_routes``) or
from ``[[route]]`` tables in faucet.toml (``config.load_config``); both go through
``normalise_route_tables``, which accepts every spelling the Rust server accepts, resolves
``workdir`` against the file's directory and reports every problem as
``route[i].key = value (from FILE): message``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from faucet.config.app_kinds import KINDS
from faucet.config.source import problem_line, read_toml
from faucet.config.strategy import Strategy
from faucet.errors import ConfigError


@frozen
class RouteConfig:
    """One ``[[route]]`` table, already checked and normalised by ``normalise_route_tables``
    (which builds every instance)."""

    route: str
    server_type: str  # a key of app_kinds.KINDS
    workers: int = 1
    strategy: Strategy | None = None
    workdir: str = "."
    app_dir: str | None = None
    qmd: str | None = None
    max_rps: float | None = None  # rps: required
    min_workers: int = 1  # rps: the fewest workers kept running


def _rust_spellings(name: str) -> tuple[str, str, str]:
    """How the Rust server's serde enums accept a kebab-case ``name``: as it is, in
    snake_case and in CamelCase (``round-robin``, ``round_robin``, ``RoundRobin``)."""
    return name, name.replace("-", "_"), "".join(part.capitalize() for part in name.split("-"))


# Every spelling the Rust server accepts, mapped to our canonical names (among them).
_SERVER_TYPES = {
    spelling: kind.name for kind in KINDS.values() for spelling in (kind.name, *kind.rust_spellings)
}
_STRATEGIES = {
    spelling: strategy for strategy in Strategy for spelling in _rust_spellings(strategy)
}


def _choices(table: Mapping[str, str]) -> str:
    return ", ".join(dict.fromkeys(table.values()))


def _route(value: Any) -> str:
    text = _string(value)
    if not text.startswith("/"):
        raise ValueError("must start with '/', for example '/api/'")
    return text


def _server_type(value: Any) -> str:
    try:
        return _SERVER_TYPES[_string(value)]
    except KeyError:
        raise ValueError(f"expected one of: {_choices(_SERVER_TYPES)}") from None


def _strategy(value: Any) -> Strategy:
    try:
        return _STRATEGIES[_string(value)]
    except KeyError:
        raise ValueError(f"expected one of: {_choices(_STRATEGIES)}") from None


def _count(least: int):
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("expected an integer")
        if value < least:
            raise ValueError(f"must be at least {least}")
        return value

    return check


_workers = _count(1)


def _max_rps(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("expected a number")
    if not 0 < value < math.inf:
        raise ValueError("must be a number greater than 0")
    return float(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


# key -> (required, check); a check returns the normalised value or raises ValueError.
_FIELDS: dict[str, tuple[bool, Callable[[Any], Any]]] = {
    "route": (True, _route),
    "server_type": (True, _server_type),
    "workers": (True, _workers),
    "strategy": (False, _strategy),
    "workdir": (False, _string),
    "app_dir": (False, _string),
    "qmd": (False, _string),
    "max_rps": (False, _max_rps),
    "min_workers": (False, _count(0)),  # 0 (scale to zero): rps only
}


_MISSING = object()


def _line(key: str, value: Any, message: str, source: str) -> str:
    return problem_line(key, None if value is _MISSING else repr(value), message, source)


def load_routes(path: Path) -> list[RouteConfig]:
    """The routes of a Rust-style ``frouter.toml``; ConfigError lists every problem."""
    data = read_toml(path)
    source = str(path)
    problems = [
        _line(key, _MISSING, "unknown key; allowed here: route", source)
        for key in data
        if key != "route"
    ]
    if not data.get("route"):
        problems.append(f"{source}: no [[route]] tables; router mode needs at least one")
        raise ConfigError(problems)
    try:
        routes = normalise_route_tables(data["route"], path.parent, source)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return routes


def normalise_route_tables(raw: Any, base_dir: Path, source: str) -> list[RouteConfig]:
    """Validate raw ``[[route]]`` tables into RouteConfigs with canonical names.

    ``workdir`` is made absolute against ``base_dir`` (the config file's directory, not the
    process cwd); ``app_dir`` and ``qmd`` stay relative to ``workdir``, the worker's cwd.
    Every problem of every table is reported at once: a check that needs a key left out
    only when that key itself is bad.
    """
    if not isinstance(raw, list) or not all(isinstance(table, dict) for table in raw):
        raise ConfigError(_line("route", raw, "expected [[route]] tables", source))
    problems: list[str] = []
    valid: dict[int, RouteConfig] = {}
    paths: dict[int, str] = {}
    for index, table in enumerate(raw):
        found, values = _table_problems(table, base_dir)
        problems += [
            _line(f"route[{index}].{key}", value, message, source) for key, value, message in found
        ]
        if "route" in values:
            paths[index] = values["route"]
        if not found:
            valid[index] = RouteConfig(**values)
    problems += [_line(*problem, source) for problem in _overlaps(paths)]
    if problems:
        raise ConfigError(problems)
    return list(valid.values())


def _workdir(table: Mapping[str, Any], base_dir: Path) -> str:
    return os.path.normpath(base_dir.absolute() / table.get("workdir", "."))


def _table_problems(table: Mapping[str, Any], base_dir: Path
                    ) -> tuple[list[tuple[str, Any, str]], dict[str, Any]]:
    """``(key, value, message)`` for one table (unknown, missing, bad values, paths), and
    the keys whose values passed, normalised."""
    problems = [
        (key, _MISSING, f"unknown key; allowed here: {', '.join(_FIELDS)}")
        for key in table
        if key not in _FIELDS
    ]
    values: dict[str, Any] = {}
    for key, (required, check) in _FIELDS.items():
        if key not in table:
            if required:
                problems.append((key, _MISSING, "required key is missing"))
            continue
        try:
            values[key] = check(table[key])
        except ValueError as exc:
            problems.append((key, table[key], str(exc)))
    problems += _scaling_problems(table, values)
    if "workdir" in values or "workdir" not in table:
        values["workdir"] = _workdir(table, base_dir)
        problems += _path_problems(table, values)
    return problems, values


def _scaling_problems(table: Mapping[str, Any], values: Mapping[str, Any]
                      ) -> list[tuple[str, Any, str]]:
    """The rps keys that only make sense together (those whose values passed)."""
    problems = []
    strategy = values.get("strategy")
    if strategy is not None and strategy.scales and "max_rps" not in table:
        problems.append(("max_rps", _MISSING, "required with strategy = 'rps': the requests "
                                              "per second one worker should take, e.g. 10"))
    if values.get("min_workers") == 0 and not (strategy is not None and strategy.scales):
        problems.append(("min_workers", 0, "0 (scale to zero) needs strategy = 'rps'; other "
                                           "strategies keep every worker running"))
    if "workers" in values and values.get("min_workers", 1) > values["workers"]:
        problems.append(("min_workers", values["min_workers"],
                         f"must be at most workers ({values['workers']})"))
    return problems


def _path_problems(table: Mapping[str, Any], values: Mapping[str, Any]
                   ) -> list[tuple[str, Any, str]]:
    """Fail at start-up, not at each worker spawn, when a directory or file is absent."""
    workdir = Path(values["workdir"])
    if not workdir.is_dir():
        return [("workdir", table.get("workdir", "."), f"directory not found: {workdir}")]
    problems = app_path_problems(workdir, values.get("app_dir"), values.get("qmd"))
    kind = values.get("server_type")
    if "qmd" not in table and kind is not None and KINDS[kind].needs_qmd:
        problems.append(("qmd", _MISSING, f"required when server_type is {kind}"))
    return problems


def app_path_problems(workdir: Path, app_dir: str | None, qmd: str | None
                      ) -> list[tuple[str, Any, str]]:
    """``app_dir`` (a folder) and ``qmd`` (a file), relative to ``workdir``, that are not
    there; the same check in start mode (--dir) and router mode (a route's workdir)."""
    problems = []
    if app_dir is not None and not (workdir / app_dir).is_dir():
        problems.append(("app_dir", app_dir, f"directory not found: {workdir / app_dir}"))
    if qmd is not None and not (workdir / qmd).is_file():
        problems.append(("qmd", qmd, f"file not found: {workdir / qmd}"))
    return problems


def _overlaps(routes: Mapping[int, str]) -> list[tuple[str, Any, str]]:
    """Duplicate routes, and routes an earlier prefix route always answers first."""
    problems = []
    for later, route in routes.items():
        for earlier, first in routes.items():
            if earlier >= later:
                break
            key = f"route[{later}].route"
            if route == first:
                problems.append((key, route, f"duplicate of route[{earlier}]"))
                break
            if first.endswith("/") and (route.startswith(first) or route == first[:-1]):
                problems.append(
                    (
                        key,
                        route,
                        f"never reached: route[{earlier}] = {first!r} comes first and "
                        "takes every path this one would; list the more specific route first",
                    )
                )
                break
    return problems
