"""``faucet`` command line: argv -> config overrides -> run.

Global options are accepted before or after the subcommand. Config problems are printed
one per line and exit with status 2.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from faucet.app import Shutdown, faucet_version, plan_router, plan_start, serve
from faucet.config.env_files import load_env_files
from faucet.config.flags import SHORT_FLAGS, START_SHORT_FLAGS, flags, help_line
from faucet.config.routes import load_routes
from faucet.config.settings import Config, config_path, env_warnings, load_config, setting_keys
from faucet.errors import ConfigError, leaves
from faucet.logs import reopen_on_sigusr1, setup_logging
from faucet.proxy.router import RouteTable
from faucet.redact import redact
from faucet.telemetry.table_init import init_table

log = logging.getLogger("faucet")
EXIT_CONFIG = 2
RUNNERS = ("rscript", "uv")
_VALUELESS = ("-h", "--help", "-V", "--version")


def _options(short: dict[str, str]) -> argparse.ArgumentParser:
    """Every setting as a flag; SUPPRESS so only flags actually given become overrides."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", metavar="PATH",
                        help="faucet.toml to read [env: FAUCET_CONFIG] "
                             "[default: ./faucet.toml when present]")
    for key in setting_keys():
        common.add_argument(*flags(key, short), dest=key,
                            metavar=key.rpartition(".")[2].upper(), help=help_line(key))
    return common


def build_parser() -> argparse.ArgumentParser:
    common, start = _options(SHORT_FLAGS), _options(START_SHORT_FLAGS)
    parser = argparse.ArgumentParser(
        prog="faucet", parents=[common],
        description="Run R web apps (Plumber, Shiny, Quarto-Shiny) in production.",
        epilog="Every option is also a faucet.toml key and a FAUCET_* variable; .Renviron "
               "and .env in the working directory are loaded too. Precedence: default < "
               "faucet.toml < environment < flag.")
    parser.add_argument("-V", "--version", action="version", version=f"faucet {faucet_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("start", parents=[start], help="serve one app from --dir")
    sub.add_parser("router", parents=[common],
                   help="serve several apps by path prefix from --conf (frouter.toml)")
    telemetry = sub.add_parser("telemetry", parents=[common], help="telemetry tools")
    tsub = telemetry.add_subparsers(dest="telemetry_command", required=True, metavar="ACTION")
    init = tsub.add_parser("init", parents=[common],
                           help="create faucet_http_events and faucet_log_events "
                                "in the telemetry database")
    init.add_argument("--timescale", action="store_true", default=False,
                      help="also make it a TimescaleDB hypertable on time")
    for name, key in (("rscript", "Rscript"), ("uv", "uv")):
        sub.add_parser(name, help=f"run {key} with faucet's environment, passing its exit code")
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


def parse(argv: Sequence[str], environ) -> tuple[argparse.Namespace, Config]:
    own, child_args = split_runner(argv)
    args = build_parser().parse_args(own)
    args.args = child_args
    keys = set(setting_keys())
    overrides = {k: v for k, v in vars(args).items() if k in keys}
    path = config_path(environ, getattr(args, "config", None))
    return args, load_config(path, environ, overrides)


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        notes = load_env_files(Path.cwd(), os.environ)
        args, config = parse(argv, os.environ)
        sys.exit(_dispatch(args, config, notes))
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


def _dispatch(args: argparse.Namespace, config: Config, notes: list[str]) -> int:
    """Run the command; ``notes`` are warnings from before logging was set up."""
    if args.command in ("start", "router"):
        handle = setup_logging(config.log_level, config.log_file, config.max_log_file_size,
                               config.log_file_backups, config.log_format, config.log_stderr)
        for line in notes + env_warnings(os.environ):
            log.warning("%s", line)
        try:
            trio.run(_run, args.command, config, handle)
        finally:
            handle.close()
        return 0
    if args.command == "telemetry":
        t = config.telemetry
        if not t.postgres_string:
            raise ConfigError("telemetry.postgres_string: required for `faucet telemetry init`; "
                              "pass --telemetry-postgres-string postgresql://...")
        init_table(t.postgres_string, t.sslmode, t.sslcert, args.timescale, t.connect_timeout)
        return 0
    executable = config.rscript if args.command == "rscript" else config.uv
    return _exec(args.command, executable, args.args)


def _exec(key: str, executable: str, args: list[str]) -> int:
    """Replace faucet with the child so its exit code (and signals) pass straight on."""
    found = shutil.which(executable)
    if found is None:
        raise ConfigError(f"{key} = {executable!r}: not found on PATH; "
                          f"set --{key} /path/to/{executable}")
    os.execv(found, [found, *args])
    return 0  # not reached


async def _run(command: str, config: Config, log_handle) -> None:
    routes = None
    if command == "router":
        route_list = config.route or load_routes(Path(config.conf))
        routes = RouteTable(route_list)
        plan = plan_router(config, route_list)
    else:
        plan = plan_start(config)
    shutdown = Shutdown(config.shutdown)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, shutdown)
        await nursery.start(reopen_on_sigusr1, log_handle)
        _tune_gc()
        await serve(config, plan, shutdown, routes=routes)
        nursery.cancel_scope.cancel()


def _tune_gc() -> None:
    """Fewer cyclic-GC passes on the request path: a proxied request allocates a few
    hundred short-lived objects, so the default gen-0 threshold (700) ran a collection
    every few requests. Measured with a fast stand-in worker: 0.58 -> 0.49-0.53 ms of
    faucet CPU per request. Objects from start-up are frozen out of the scans."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def _watch_signals(shutdown) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s received: shutting down (%s)%s", signal.Signals(signum).name,
                     shutdown.mode, "; again: forcing" if shutdown.stopping.is_set() else "")
            shutdown.request()
