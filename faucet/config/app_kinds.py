"""The kinds of app faucet runs, one record each.

Everything that differs by kind (how ``type = "auto"`` recognises it, the worker's command
line, the executable it needs, its default strategy, the Rust server's spellings) is read
from ``KINDS`` instead of branching on the kind's name. Pure: no I/O, no trio.
"""

from __future__ import annotations

from attrs import frozen

from faucet.config.strategy import Strategy


@frozen
class Runtime:
    """An executable apps run under: its setting (``rscript`` <-> ``--rscript``) and what
    to tell a user who does not have it."""

    key: str
    install_hint: str


RSCRIPT = Runtime("rscript", "install R (apt-get install r-base-core) or set --rscript "
                             "/path/to/Rscript")
QUARTO = Runtime("quarto", "install Quarto or set --quarto /path/to/quarto")
# {python}: faucet's own interpreter, beside which faucet also looks (faucet-r[fast-api]).
UV = Runtime("uv", "install it beside faucet ({python} -m pip install uv) or on PATH, "
                   "or set --uv /path/to/uv")
RUNTIMES = {runtime.key: runtime for runtime in (RSCRIPT, QUARTO, UV)}


@frozen
class AppKind:
    """One kind of app.

    ``argv`` is the worker's command line, each part a ``str.format`` template over
    ``exe`` (the runtime's executable), ``port``, ``app_dir`` (the app folder as an R string
    literal) and ``qmd`` (the Quarto document).
    """

    name: str
    runtime: Runtime
    argv: tuple[str, ...]
    # Shiny sessions keep state in one R process, so they need a sticky strategy.
    default_strategy: Strategy
    # Sets of file names; a folder holding every file of any one set is this kind.
    detected_by: tuple[tuple[str, ...], ...] = ()
    needs_qmd: bool = False
    # Whether its apps serve WebSockets (a plumber API never does: upgrades are refused).
    websockets: bool = True
    # Its WebSockets are Shiny sessions faucet holds across reconnects (docs/shiny.md).
    # Its workers are then also busy with no request in flight (a session computes
    # between HTTP requests), so a probe left unanswered is no sign of a hang.
    sessions: bool = False
    # How the Rust server's frouter.toml may also spell ``server_type``.
    rust_spellings: tuple[str, ...] = ()


# In detection order: a folder with both plumber.R and app.R is a plumber app.
KINDS = {kind.name: kind for kind in (
    AppKind(
        "plumber", RSCRIPT,
        ("{exe}", "-e", 'options("plumber.port"={port}); '
                        'plumber::pr_run(plumber::plumb(), host="127.0.0.1")'),
        Strategy.ROUND_ROBIN,
        detected_by=(("plumber.R",), ("entrypoint.R",)),
        websockets=False,
        rust_spellings=("Plumber",),
    ),
    AppKind(
        "shiny", RSCRIPT,
        ("{exe}", "-e", 'options("shiny.port"={port}); '
                        'shiny::runApp({app_dir}, host="127.0.0.1", launch.browser=FALSE)'),
        Strategy.COOKIE_HASH,
        detected_by=(("app.R",), ("ui.R", "server.R")),
        sessions=True,
        rust_spellings=("Shiny",),
    ),
    AppKind(
        # The Rust server's argv plus --host (quarto's default, made explicit). `quarto
        # serve` opens no browser unless given --browser, and has no --no-browse flag.
        "quarto-shiny", QUARTO,
        ("{exe}", "serve", "--port", "{port}", "--host", "127.0.0.1", "{qmd}"),
        Strategy.COOKIE_HASH,
        needs_qmd=True,
        sessions=True,
        rust_spellings=("quarto_shiny", "QuartoShiny"),
    ),
    AppKind(
        # The Rust server's argv plus --host: `fastapi run` binds 0.0.0.0 by default.
        "fast-api", UV,
        ("{exe}", "run", "fastapi", "run", "--workers", "1", "--host", "127.0.0.1",
         "--port", "{port}"),
        Strategy.ROUND_ROBIN,
        rust_spellings=("FastAPI",),
    ),
)}


def strategy_for(kind: str, chosen: Strategy | None, key: str
                 ) -> tuple[Strategy, str | None]:
    """The strategy an app of ``kind`` runs with, and a warning when it is not ``chosen``.

    A kind whose default is sticky (Shiny: a session lives in one R process) gets that
    default instead of a non-sticky choice (round-robin, least-busy), which would break
    its sessions; the warning names ``key`` and the value. The Rust server switches such a
    choice to ip-hash, and only at debug level.
    """
    default = KINDS[kind].default_strategy
    if chosen is None:
        return default, None
    if default.sticky and not chosen.sticky:
        return default, (f"{key} = {str(chosen)!r} is not sticky, but a {kind} session must "
                         f"stay on its worker process: using {default} instead")
    return chosen, None
