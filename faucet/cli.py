"""``faucet`` command line: argv -> config overrides -> run.

Global options are accepted before or after the subcommand. Config problems are printed
one per line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from faucet.config import (
    CLI_ALIASES,
    Config,
    config_path,
    flag_name,
    load_config,
    setting_keys,
)
from faucet.errors import ConfigError

log = logging.getLogger("faucet")
EXIT_CONFIG = 2


def _options() -> argparse.ArgumentParser:
    """Every setting as a flag; SUPPRESS so only flags actually given become overrides."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", metavar="PATH",
                        help="faucet.toml to read (default: ./faucet.toml when present)")
    for key in setting_keys():
        common.add_argument(flag_name(key), dest=key, metavar="VALUE")
    for flag, key in CLI_ALIASES.items():
        common.add_argument(flag, dest=key, metavar="VALUE", help=f"alias of {flag_name(key)}")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _options()
    parser = argparse.ArgumentParser(
        prog="faucet", parents=[common],
        description="Run R web apps (Plumber, Shiny, Quarto-Shiny) in production.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("start", parents=[common], help="serve one app from --dir")
    sub.add_parser("router", parents=[common],
                   help="serve several apps by path prefix from --conf (frouter.toml)")
    telemetry = sub.add_parser("telemetry", parents=[common], help="telemetry tools")
    tsub = telemetry.add_subparsers(dest="telemetry_command", required=True, metavar="ACTION")
    init = tsub.add_parser("init", parents=[common],
                           help="create faucet_http_events in the telemetry database")
    init.add_argument("--timescale", action="store_true", default=False,
                      help="also make it a TimescaleDB hypertable on time")
    for name, key in (("rscript", "Rscript"), ("uv", "uv")):
        runner = sub.add_parser(name, parents=[common], help=f"run {key} with faucet's settings")
        runner.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def parse(argv: Sequence[str], environ) -> tuple[argparse.Namespace, Config]:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in set(setting_keys())}
    path = config_path(environ, getattr(args, "config", None))
    return args, load_config(path, environ, overrides)


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, config = parse(argv, os.environ)
        _setup_logging(config)
        sys.exit(_dispatch(args, config))
    except ConfigError as exc:
        _print_problems(exc)
    except BaseExceptionGroup as group:
        matched, rest = group.split(ConfigError)
        if rest is not None or matched is None:
            raise
        _print_problems(*_leaves(matched))
    except KeyboardInterrupt:
        sys.exit(130)


def _print_problems(*errors: ConfigError) -> None:
    for error in errors:
        for line in error.problems:
            print(f"faucet: {line}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)


def _leaves(group: BaseException) -> list:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in _leaves(exc)]
    return [group]


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    if args.command in ("start", "router"):
        trio.run(_run, args.command, config)
        return 0
    if args.command == "telemetry":
        from faucet.telemetry_init import init_table

        t = config.telemetry
        if not t.postgres_string:
            raise ConfigError("telemetry.postgres_string: required for `faucet telemetry init`; "
                              "pass --telemetry-postgres-string postgresql://...")
        init_table(t.postgres_string, t.sslmode, t.sslcert, args.timescale)
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


async def _run(command: str, config: Config) -> None:
    from faucet.app import Shutdown, plan_router, plan_start, serve

    routes = None
    if command == "router":
        from faucet.router import RouteTable, load_routes

        route_list = config.route or load_routes(Path(config.conf))
        routes = RouteTable(route_list)
        plan = plan_router(config, route_list)
    else:
        plan = plan_start(config)
    shutdown = Shutdown(config.shutdown)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, shutdown)
        await serve(config, plan, shutdown, routes=routes)
        nursery.cancel_scope.cancel()


async def _watch_signals(shutdown) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s received: shutting down (%s)%s", signal.Signals(signum).name,
                     shutdown.mode, "; again: forcing" if shutdown.stopping.is_set() else "")
            shutdown.request()


def _setup_logging(config: Config) -> None:
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
