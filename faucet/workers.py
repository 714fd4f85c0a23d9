"""What to run for each worker: app-kind detection and the command line (pure, no I/O
beyond looking at a folder's file names)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from attrs import frozen

from faucet.errors import ConfigError
from faucet.strategy import Strategy

STICKY_BY_DEFAULT = ("shiny", "quarto-shiny")


@frozen
class AppSpec:
    """One app: its kind, the folder it runs in and the executables it needs."""

    kind: str  # plumber | shiny | quarto-shiny | fast-api
    workdir: Path
    app_dir: str | None = None
    qmd: str | None = None
    rscript: str = "Rscript"
    quarto: str = "quarto"
    uv: str = "uv"


def detect_kind(folder: Path) -> str | None:
    """plumber.R / entrypoint.R -> plumber; app.R, or ui.R + server.R -> shiny."""
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if names & {"plumber.R", "entrypoint.R"}:
        return "plumber"
    if "app.R" in names or {"ui.R", "server.R"} <= names:
        return "shiny"
    return None


def resolve_kind(requested: str, workdir: Path, app_dir: str | None, key: str = "type") -> str:
    """The app kind to run; ConfigError naming ``key`` when it cannot be decided."""
    if not workdir.is_dir():
        raise ConfigError(f"dir = {str(workdir)!r}: no such directory; point --dir at your app")
    if requested != "auto":
        return requested
    kind = detect_kind(workdir / app_dir if app_dir else workdir)
    if kind is None:
        raise ConfigError(
            f"{key} = 'auto': cannot detect the app type in {str(workdir)!r} (no plumber.R, "
            "entrypoint.R, app.R or ui.R + server.R); set --type plumber|shiny|quarto-shiny|"
            "fast-api"
        )
    return kind


def default_strategy(kind: str) -> Strategy:
    """Shiny sessions keep state in one R process, so they need a sticky strategy."""
    return Strategy.COOKIE_HASH if kind in STICKY_BY_DEFAULT else Strategy.ROUND_ROBIN


def worker_argv(app: AppSpec, port: int) -> list[str]:
    """The command that starts one worker listening on 127.0.0.1:``port``."""
    if app.kind == "plumber":
        code = f'options("plumber.port"={port}); plumber::pr_run(plumber::plumb(), host="127.0.0.1")'  # noqa: E501
        return [app.rscript, "-e", code]
    if app.kind == "shiny":
        code = (
            f'options("shiny.port"={port}); '
            f'shiny::runApp({_r_string(app.app_dir or ".")}, host="127.0.0.1", '
            "launch.browser=FALSE)"
        )
        return [app.rscript, "-e", code]
    if app.kind == "quarto-shiny":
        # The Rust server's argv plus --host (quarto's default, made explicit). `quarto
        # serve` opens no browser unless given --browser, and has no --no-browse flag.
        return [app.quarto, "serve", "--port", str(port), "--host", "127.0.0.1", app.qmd or ""]
    if app.kind == "fast-api":
        # The Rust server's argv plus --host: `fastapi run` binds 0.0.0.0 by default.
        return [app.uv, "run", "fastapi", "run", "--workers", "1", "--host", "127.0.0.1",
                "--port", str(port)]
    raise ValueError(f"unknown app kind {app.kind!r}")


def worker_env(base: dict[str, str], worker_id: int) -> dict[str, str]:
    """The worker's environment: ours plus its 1-based ``FAUCET_WORKER_ID``."""
    return {**base, "FAUCET_WORKER_ID": str(worker_id)}


def executable_for(app: AppSpec) -> tuple[str, str]:
    """(setting key, executable) that the kind needs, for the start-up check."""
    return {
        "plumber": ("rscript", app.rscript),
        "shiny": ("rscript", app.rscript),
        "quarto-shiny": ("quarto", app.quarto),
        "fast-api": ("uv", app.uv),
    }[app.kind]


def check_executable(app: AppSpec) -> None:
    """Fail at start-up, not with workers that stay offline, when the runtime is missing."""
    key, exe = executable_for(app)
    if shutil.which(exe) is None:
        hint = {
            "rscript": "install R (apt-get install r-base-core) or set --rscript /path/to/Rscript",
            "quarto": "install Quarto or set --quarto /path/to/quarto",
            "uv": "pip install uv, or set --uv /path/to/uv",
        }[key]
        raise ConfigError(f"{key} = {exe!r}: not found on PATH ({os.environ.get('PATH', '')}); "
                          f"{hint}")
    if app.kind == "quarto-shiny" and not app.qmd:
        raise ConfigError("qmd: required for --type quarto-shiny; set --qmd path/to/doc.qmd")


def _r_string(text: str) -> str:
    """An R string literal for ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
