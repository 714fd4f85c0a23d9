"""What to run for each worker: app-kind detection and the command line (pure, no I/O
beyond looking at a folder's file names and the PATH). What differs by kind is read from
``app_kinds.KINDS``."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from attrs import frozen

from faucet.config.app_kinds import KINDS, RUNTIMES
from faucet.config.routes import app_path_problems
from faucet.config.settings import CONFIG_ENV, ENV_ALIASES, Config, env_name, setting_keys
from faucet.config.source import problem_line
from faucet.errors import ConfigError

# Whole namespaces of telemetry settings, ours and the Rust server's (its
# FAUCET_TELEMETRY_POSTGRES_SSLCERT, say), also names this version does not read.
TELEMETRY_PREFIXES = ("FAUCET_TELEMETRY_", "FAUCET_PG_")
# libpq's variables that hold a password or point to one (or to a client key).
LIBPQ_SECRETS = frozenset({"PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE", "PGSSLKEY"})


@frozen
class AppSpec:
    """One app: its kind (a key of ``KINDS``), the folder it runs in and the executables
    it may need (one per ``Runtime.key``)."""

    kind: str
    workdir: Path
    app_dir: str | None = None
    qmd: str | None = None
    rscript: str = "Rscript"
    quarto: str = "quarto"
    uv: str = "uv"


def detect_kind(folder: Path) -> str | None:
    """The first kind whose marker files the folder holds (plumber.R / entrypoint.R ->
    plumber; app.R, or ui.R + server.R -> shiny); None when none matches."""
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    for kind in KINDS.values():
        if any(names.issuperset(files) for files in kind.detected_by):
            return kind.name
    return None


def resolve_kind(requested: str, workdir: Path, app_dir: str | None, key: str = "type",
                 qmd: str | None = None) -> str:
    """The app kind to run; ConfigError naming ``key`` when it cannot be decided, or when
    ``workdir``, ``app_dir`` or ``qmd`` (both relative to it) are not there."""
    if not workdir.is_dir():
        raise ConfigError(f"dir = {str(workdir)!r}: no such directory; point --dir at your app")
    missing = app_path_problems(workdir, app_dir, qmd)
    if missing:
        raise ConfigError([problem_line(name, repr(value), f"{message} (relative to --dir)")
                           for name, value, message in missing])
    if requested != "auto":
        return requested
    kind = detect_kind(workdir / app_dir if app_dir else workdir)
    if kind is None:
        *markers, last = (" + ".join(files) for k in KINDS.values() for files in k.detected_by)
        raise ConfigError(
            f"{key} = 'auto': cannot detect the app type in {str(workdir)!r} (no "
            f"{', '.join(markers)} or {last}); set --type {'|'.join(KINDS)}"
        )
    return kind


def worker_argv(app: AppSpec, port: int) -> list[str]:
    """The command that starts one worker listening on 127.0.0.1:``port``."""
    _, name = executable_for(app)
    exe = find_executable(name) or name
    values = {"exe": exe, "port": port, "app_dir": _r_string(app.app_dir or "."),
              "qmd": app.qmd or ""}
    return [part.format(**values) for part in KINDS[app.kind].argv]


def withheld_variables(config: Config) -> frozenset[str]:
    """The variables workers must not inherit: every one faucet reads a setting from
    (faucet's configuration, the telemetry connection string among it, is not the app's)
    and, when faucet writes telemetry to PostgreSQL, libpq's credentials, which its
    connection then reads. With telemetry elsewhere, ``PGPASSWORD`` is the app's own and
    reaches it."""
    names = {env_name(key) for key in setting_keys()} | set(ENV_ALIASES) | {CONFIG_ENV}
    if config.telemetry.sink_name == "postgres":
        names |= LIBPQ_SECRETS
    return frozenset(names)


def worker_env(base: Mapping[str, str], worker_id: int,
               withheld: frozenset[str]) -> dict[str, str]:
    """The worker's environment: ours less ``withheld`` and any telemetry variable, plus
    its 1-based ``FAUCET_WORKER_ID``."""
    env = {name: value for name, value in base.items()
           if name not in withheld and not name.startswith(TELEMETRY_PREFIXES)}
    env["FAUCET_WORKER_ID"] = str(worker_id)
    return env


def executable_for(app: AppSpec) -> tuple[str, str]:
    """(setting key, executable) that the kind needs, for the start-up check."""
    key = KINDS[app.kind].runtime.key
    return key, getattr(app, key)


def find_executable(name: str) -> str | None:
    """``name``'s path: on PATH, else beside faucet's own interpreter (the venv's ``bin``,
    where ``pip install faucet-r[fast-api]`` puts uv, though that folder need not be on
    PATH when faucet is run as ``.venv/bin/faucet``)."""
    return shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))


def require_executable(key: str, name: str) -> str:
    """``name``'s path (``key`` is its setting: rscript, quarto, uv); ConfigError naming
    where faucet looked and what to do when it is not found."""
    found = find_executable(name)
    if found is None:
        hint = RUNTIMES[key].install_hint.format(python=sys.executable)
        raise ConfigError(f"{key} = {name!r}: not found on PATH ({os.environ.get('PATH', '')}) "
                          f"or in {os.path.dirname(sys.executable)}; {hint}")
    return found


def check_executable(app: AppSpec) -> None:
    """Fail at start-up, not with workers that stay offline, when the runtime is missing."""
    kind = KINDS[app.kind]
    require_executable(*executable_for(app))
    if kind.needs_qmd and not app.qmd:
        raise ConfigError(f"qmd: required for --type {kind.name}; set --qmd path/to/doc.qmd")


def _r_string(text: str) -> str:
    """An R string literal for ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
