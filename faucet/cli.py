"""``faucet`` command line: argv -> config overrides -> run.

Each command is one ``_add_*`` function (its parser: description, examples, the groups of
settings it takes) and one entry in ``RUN``. Settings may also come before the command
(for ``rscript`` and ``uv``, only there: what follows them is the child's). Every config
problem is printed, one per line, in one run, with exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import logging
import os
import re
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path

import trio

from faucet.app import Shutdown, faucet_version, serve
from faucet.config.env_files import load_env_files
from faucet.config.flags import (
    COMMAND_GROUPS,
    GROUPS,
    SHORT_FLAGS,
    START_SHORT_FLAGS,
    default_value,
    every_key,
    flags,
    help_line,
)
from faucet.config.routes import load_routes
from faucet.config.settings import (
    SINK_OPTIONS,
    Loaded,
    config_path,
    env_warnings,
    load_settings,
)
from faucet.config.show import render
from faucet.config.source import problem_line
from faucet.errors import ConfigError, leaves
from faucet.lifecycle.deploy import Reloads, Snapshot
from faucet.lifecycle.pidfile import pid_file, signal_reload
from faucet.lifecycle.plan import Plan, check_plan, plan_router, plan_start
from faucet.logs import LogHandle, reopen_on_sigusr1, setup_logging
from faucet.proxy.router import RouteTable
from faucet.redact import redact
from faucet.telemetry import report
from faucet.telemetry.table_init import init_table
from faucet.workers.command import require_executable

log = logging.getLogger("faucet")
EXIT_CONFIG = 2
RUNNERS = ("rscript", "uv")
_VALUELESS = ("-h", "--help", "-V", "--version")
# What planning reads: with a problem in one of these, the plan's own checks are skipped
# rather than reporting a consequence of that problem.
PLAN_INPUTS = frozenset({"dir", "type", "app_dir", "qmd", "conf", "route", "strategy",
                         "max_rps", "rscript", "quarto", "uv"})

DESCRIPTION = """\
Run R web apps (Plumber, Shiny, Quarto-Shiny) and FastAPI apps in production: a pool of
supervised workers behind one HTTP/WebSocket address, load balancing, telemetry.

examples:
  faucet start --dir ./myapi --workers 4          a Plumber API (plumber.R)
  faucet start --dir ./myapp                      a Shiny app (app.R, ui.R + server.R)
  faucet router --conf frouter.toml               several apps by path prefix
  faucet config show                              the settings in effect, and their sources
  faucet --rscript /opt/R/bin/Rscript rscript -e 'library(plumber)'"""
EPILOG = """\
`faucet COMMAND --help` lists a command's options, each with its FAUCET_* variable and
default. Every option is also a faucet.toml key (`faucet config example` prints them all);
.Renviron and .env in the working directory are loaded too. Precedence: default <
faucet.toml < environment < flag. Options may come before or after the command, except
for rscript and uv: everything after those goes to the program."""


class _Parser(argparse.ArgumentParser):
    """Errors in two lines (the problem, with a close match, and where help is) instead of
    the whole usage."""

    def error(self, message: str) -> None:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += _did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        self.exit(EXIT_CONFIG, f"{self.prog}: {message}\n"
                               f"Run '{self.prog} --help' for its options.\n")


def _did_you_mean(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _add_setting(target, key: str, short: dict[str, str], hidden: bool = False) -> None:
    kwargs: dict = {"dest": key, "metavar": key.rpartition(".")[2].upper(),
                    "help": argparse.SUPPRESS if hidden else help_line(key)}
    if key == SINK_OPTIONS:
        kwargs.update(action="append", metavar="KEY=VALUE")
    elif isinstance(default_value(key), bool):  # --watch alone means --watch true
        kwargs.update(nargs="?", const="true", metavar="true|false")
    target.add_argument(*flags(key, short), **kwargs)


def _add_config_option(target) -> None:
    target.add_argument("--config", metavar="PATH",
                        help="faucet.toml to read [env: FAUCET_CONFIG] "
                             "[default: ./faucet.toml when present]")


def _command(sub, name: str, summary: str, examples: str = "", settings: str | None = None,
             short: dict[str, str] = SHORT_FLAGS) -> argparse.ArgumentParser:
    """A command's parser: ``summary`` and ``examples`` on top, then the groups of
    settings COMMAND_GROUPS gives ``settings`` (none when None)."""
    full = f"{sub.prog_prefix} {name}"
    parser = sub.add_parser(
        name, help=summary, prog=full, usage=f"{full} [OPTIONS]",
        description=textwrap.fill(summary, 88) + (f"\n\nexamples:\n{examples}" if examples else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS)
    if settings is not None:
        _add_config_option(parser)
        for title in COMMAND_GROUPS[settings]:
            group = parser.add_argument_group(title)
            for key in GROUPS[title]:
                _add_setting(group, key, short)
    return parser


def _subcommands(parser: argparse.ArgumentParser, dest: str):
    """The parser's commands; each one's ``prog`` is the parser's plus its name."""
    sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND", title="commands")
    sub.prog_prefix = parser.prog
    return sub


def _add_serving(sub) -> None:
    _command(sub, "start", "Serve one app from --dir.", settings="start",
             short=START_SHORT_FLAGS, examples="""\
  faucet start --dir examples/plumber --workers 2
  faucet start --dir examples/shiny --strategy cookie-hash
  faucet start --type fast-api --dir examples/fastapi
  FAUCET_WORKERS=4 faucet start --log-file /var/log/faucet/faucet.log""")
    _command(sub, "router", "Serve several apps by path prefix, from [[route]] tables "
                            "(--conf frouter.toml).", settings="router", examples="""\
  faucet router --conf examples/frouter.toml
  faucet router --conf frouter.toml --host 0.0.0.0:80 --log-format json""")


def _add_reload(sub) -> None:
    _command(sub, "reload", "Make a running faucet read its settings and apps again: apps "
                            "whose settings or files changed get new workers, and the old "
                            "ones drain (the same as sending it SIGHUP). The faucet is found "
                            "by its pid_file.", settings="reload", examples="""\
  faucet reload                                   the faucet on the default host
  faucet reload --host 0.0.0.0:80                 the one started with that --host
  faucet reload --pid-file /run/faucet.pid""")


def _add_telemetry(sub) -> None:
    telemetry = _command(sub, "telemetry", "Telemetry tools.")
    init = _command(_subcommands(telemetry, "telemetry_command"), "init",
                    "Create faucet_http_events and faucet_log_events in the telemetry "
                    "database (tables already there are left as they are).",
                    settings="telemetry init", examples="""\
  faucet telemetry init --telemetry-postgres-string postgresql://faucet@db/metrics
  FAUCET_TELEMETRY_POSTGRES_STRING=postgresql://... faucet telemetry init --timescale""")
    init.add_argument("--timescale", action="store_true", default=False,
                      help="also make faucet_http_events a TimescaleDB hypertable on time")


def _add_report(sub) -> None:
    report.add_arguments(_command(sub, "report", report.SUMMARY, examples=report.EXAMPLES,
                                  settings="report"))


def _add_config(sub) -> None:
    config = _command(sub, "config", "Show faucet's settings.")
    actions = _subcommands(config, "config_command")
    _command(actions, "show", "Print the settings in effect as faucet.toml lines, each "
                              "with where its value came from (default, the file, a variable "
                              "or a flag).", settings="config show", examples="""\
  faucet config show
  FAUCET_WORKERS=2 faucet config show --config faucet.toml""")
    _command(actions, "example", "Print faucet.example.toml: every key, with its variable "
                                 "and flag, commented.", examples="""\
  faucet config example > faucet.toml""")


def _add_runners(sub) -> None:
    for name, program in (("rscript", "Rscript"), ("uv", "uv")):
        _command(sub, name, f"Run {program} ARGS... as faucet would (--{name}, beside faucet's "
                            "Python), passing its exit status on.")


def _add_docs(sub) -> None:
    docs = _command(sub, "docs", "Print one of faucet's documentation pages (the README's "
                                 "docs/PAGE.md, installed with faucet); without PAGE, list them.",
                    examples="  faucet docs router | less")
    docs.add_argument("page", nargs="?", metavar="PAGE", help="a page's name, e.g. router")


# The commands, in --help order; a new one adds its parser here and its handler to RUN.
COMMANDS: list[Callable] = [_add_serving, _add_reload, _add_runners, _add_telemetry,
                            _add_report, _add_config, _add_docs]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="faucet", usage="faucet [OPTIONS] COMMAND [ARGS]",
                     description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     argument_default=argparse.SUPPRESS)
    parser.add_argument("-V", "--version", action="version", version=f"faucet {faucet_version()}")
    _add_config_option(parser)
    for key in every_key():  # accepted before the command too; listed under each command
        _add_setting(parser, key, SHORT_FLAGS, hidden=True)
    sub = _subcommands(parser, "command")
    for add in COMMANDS:
        add(sub)
    return parser


def split_runner(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """For ``faucet [OPTIONS] rscript|uv ARGS...``: (faucet's part, the child's ARGS).

    The child's arguments look like options (``-e``), so they are cut off before argparse
    sees them; everything else goes through argparse unchanged.
    """
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in RUNNERS:
            return list(argv[: index + 1]), list(argv[index + 1 :])
        if not token.startswith("-"):
            break
        if token not in _VALUELESS and "=" not in token and (
                token.startswith("--") or len(token) == 2):
            index += 1  # skip the option's value: --rscript R, -r R (not -rR, --x=y)
        index += 1
    return list(argv), []


def parse(argv: Sequence[str], environ) -> tuple[argparse.Namespace, Loaded]:
    own, child_args = split_runner(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(own)
    if unknown:
        _refuse_unknown(parser, args, unknown)
    args.args = child_args
    keys = set(every_key())
    overrides = {k: v for k, v in vars(args).items() if k in keys}
    path = config_path(environ, getattr(args, "config", None))
    return args, load_settings(path, environ, overrides)


def _refuse_unknown(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    unknown: list[str]) -> None:
    """Exit 2 naming the first unknown option with the closest one the command takes."""
    for dest in ("command", "telemetry_command", "config_command"):
        if getattr(args, dest, None) is None:
            continue
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[getattr(args, dest)]
    word = unknown[0]
    if not word.startswith("-"):
        parser.error(f"unexpected argument {word!r}")
    name = word.partition("=")[0]
    known = [flag for flag in parser._option_string_actions if flag.startswith("--")]
    parser.error(f"unknown option {name}{_did_you_mean(name, known)}")


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        started_with = dict(os.environ)  # what a reload reads .env files over again
        notes = load_env_files(Path.cwd(), os.environ)
        args, loaded = parse(argv, os.environ)
        args.reread = _reread(args.command, argv, started_with)
        sys.exit(RUN[args.command](args, loaded, notes))
    except ConfigError as exc:
        _print_problems(exc)
    except BaseExceptionGroup as group:
        matched, rest = group.split(ConfigError)
        if rest is not None or matched is None:
            raise
        _print_problems(*leaves(matched))
    except KeyboardInterrupt:
        sys.exit(130)


def _print_problems(*errors: ConfigError) -> None:
    for error in errors:
        for line in error.problems:
            print(f"faucet: {redact(line)}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)


def _raise_problems(loaded: Loaded) -> None:
    if loaded.problems:
        raise ConfigError(loaded.problems)


def _serve(args: argparse.Namespace, loaded: Loaded, notes: list[str]) -> int:
    """start / router: every problem (settings, log file, routes, app, executables) is
    found before anything runs, and reported together; ``notes`` are warnings from before
    logging was set up."""
    config = loaded.config
    problems = list(loaded.problems)
    handle = plan = routes = None
    try:
        handle = setup_logging(config.log_level, config.log_file, config.max_log_file_size,
                               config.log_file_backups, config.log_format, config.log_stderr)
    except OSError as exc:
        problems.append(problem_line(
            "log_file", repr(config.log_file), f"cannot write there: {exc.strerror}; choose "
            "a path faucet's user may write (its folder is created when missing)",
            loaded.origin.get("log_file", "")))
    try:
        if not loaded.bad & PLAN_INPUTS:
            plan, routes = _plan(args.command, config)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        if handle is not None:
            handle.close()
        raise ConfigError(problems)
    for line in notes + env_warnings(os.environ):
        log.warning("%s", line)
    try:
        trio.run(_run, config, plan, routes, handle, args.reread)
    finally:
        handle.close()
    return 0


def _plan(command: str, config) -> tuple[Plan, RouteTable | None]:
    if command == "router":
        route_list = config.route or load_routes(Path(config.conf))
        plan = plan_router(config, route_list)
        routes = RouteTable(route_list)
    else:
        plan, routes = plan_start(config), None
    check_plan(plan)
    return plan, routes


def _reread(command: str, argv: Sequence[str], environ: dict[str, str]):
    """What a reload reads: the same argv over the environment faucet started with,
    .Renviron and .env read again, then faucet.toml and frouter.toml; every problem
    raised together, as at start-up."""
    def reread() -> Snapshot:
        fresh = dict(environ)
        load_env_files(Path.cwd(), fresh)
        _, loaded = parse(argv, fresh)
        _raise_problems(loaded)
        plan, routes = _plan(command, loaded.config)
        return Snapshot(loaded.config, plan, routes)
    return reread


def _reload(args: argparse.Namespace, loaded: Loaded, notes: list[str]) -> int:
    _raise_problems(loaded)
    return signal_reload(loaded.config)


def _telemetry(args: argparse.Namespace, loaded: Loaded, notes: list[str]) -> int:
    _raise_problems(loaded)
    t = loaded.config.telemetry
    if not t.postgres_string:
        raise ConfigError("telemetry.postgres_string: required for `faucet telemetry init`; "
                          "pass --telemetry-postgres-string postgresql://... (or set "
                          "FAUCET_TELEMETRY_POSTGRES_STRING)")
    for line in init_table(t.postgres_string, t.sslmode, t.sslcert, args.timescale,
                           t.connect_timeout):
        print(f"faucet telemetry init: {line}")
    return 0


def _report(args: argparse.Namespace, loaded: Loaded, notes: list[str]) -> int:
    _raise_problems(loaded)
    return report.run(args, loaded.config.telemetry)


def _config(args: argparse.Namespace, loaded: Loaded, notes: list[str]) -> int:
    if args.config_command == "example":
        sys.stdout.write(example_toml())
        return 0
    _raise_problems(loaded)
    sys.stdout.write(render(loaded))
    return 0


def example_toml() -> str:
    """faucet.example.toml, as shipped in the package (a link to the checkout's copy)."""
    return (files("faucet") / "faucet.example.toml").read_text()


def _docs(args: argparse.Namespace, loaded: Loaded, notes: list[str]) -> int:
    pages = {path.name.removesuffix(".md"): path for path in (files("faucet") / "docs").iterdir()
             if path.name.endswith(".md")}
    page = getattr(args, "page", None)
    if page is None:
        print("\n".join(sorted(pages)))
        return 0
    if page.removesuffix(".md") not in pages:
        raise ConfigError(f"docs: no page {page!r}{_did_you_mean(page, list(pages))} "
                          f"(pages: {', '.join(sorted(pages))})")
    sys.stdout.write(pages[page.removesuffix(".md")].read_text())
    return 0


def _runner(args: argparse.Namespace, loaded: Loaded, notes: list[str]) -> int:
    """Replace faucet with Rscript or uv so its exit code (and signals) pass straight on."""
    _raise_problems(loaded)
    key = args.command
    found = require_executable(key, getattr(loaded.config, key))
    os.execv(found, [found, *args.args])
    return 0  # not reached


RUN: dict[str, Callable[[argparse.Namespace, Loaded, list[str]], int]] = {
    "start": _serve, "router": _serve, "reload": _reload, "telemetry": _telemetry,
    "report": _report, "config": _config,
    "rscript": _runner, "uv": _runner, "docs": _docs,
}


async def _run(config, plan: Plan, routes: RouteTable | None, log_handle: LogHandle,
               reread) -> None:
    shutdown = Shutdown(config.shutdown, config.shutdown_delay)
    reloads = Reloads()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, shutdown, reloads)
        await nursery.start(reopen_on_sigusr1, log_handle)
        _tune_gc()
        with pid_file(config):
            await serve(config, plan, shutdown, routes=routes, reloads=reloads, load=reread)
        nursery.cancel_scope.cancel()


def _tune_gc() -> None:
    """Fewer cyclic-GC passes on the request path: a proxied request allocates a few
    hundred short-lived objects, so the default gen-0 threshold (700) ran a collection
    every few requests. Measured with a fast stand-in worker: 0.58 -> 0.49-0.53 ms of
    faucet CPU per request. Objects from start-up are frozen out of the scans."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def _watch_signals(shutdown, reloads) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP received: reloading")
                reloads.request()
                continue
            log.info("%s received: shutting down (%s)%s", signal.Signals(signum).name,
                     shutdown.mode, "; again: forcing" if shutdown.stopping.is_set() else "")
            shutdown.request()

