"""``faucet report``: what the telemetry tables say about a window of time, for a terminal,
as JSON (``--json``) or as one self-contained HTML page (``--html FILE``).

It connects with the telemetry settings ``faucet start`` uses (the same flags, FAUCET_*
variables and ``[telemetry]`` table), reads in one read-only transaction under
``telemetry.statement_timeout``, and is a plain blocking command (no event loop).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from faucet.config.settings import TelemetryConfig
from faucet.errors import ConfigError
from faucet.sinks.pg_conninfo import connection_settings
from faucet.telemetry.report_html import render_html
from faucet.telemetry.report_query import ReportUnavailable, read_report
from faucet.telemetry.report_render import render_text, to_json
from faucet.telemetry.report_spec import (
    APDEX_T,
    DEFAULT_SINCE,
    DEFAULT_TOP,
    ReportSpec,
    make_window,
)

ALL_NAMESPACES = "*"
EXIT_UNAVAILABLE = 1


SUMMARY = "Summarise a time window of telemetry as text, JSON or HTML."
EXAMPLES = """\
  faucet report                                   the last 24 hours
  faucet report --since 15m --route /api/
  faucet report --from 2024-05-01 --to 2024-05-02T06:00 --version 1.4.2
  faucet report --json > report.json
  faucet report --html report.html                one self-contained page with charts"""


# The options that take a text value, by help group: (flag, metavar, help). Each is
# stored as report_<name> (none of them is a setting).
TEXT_OPTIONS = {
    "window (default: --since 24h)": (
        ("--since", "AGE", f"the last AGE: 90s, 15m, 24h, 7d, 2w [default: {DEFAULT_SINCE}]"),
        ("--from", "TIME", "start, ISO 8601 (2024-05-01 or 2024-05-01T13:00; no zone: UTC)"),
        ("--to", "TIME", "end, ISO 8601 [default: now]"),
    ),
    "filters": (
        ("--namespace", "N", "only this namespace; '*' for all [default: telemetry.namespace]"),
        ("--version", "V", "only this telemetry version [default: all, side by side]"),
        ("--route", "R", "only this router route (worker_route), e.g. /api/"),
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report's own options (the telemetry settings come from the caller's parser)."""
    for title, options in TEXT_OPTIONS.items():
        group = parser.add_argument_group(title)
        for flag, metavar, text in options:
            group.add_argument(flag, dest="report_" + flag[2:], metavar=metavar, default=None,
                               help=text)
    output = parser.add_argument_group("output (default: text)").add_mutually_exclusive_group()
    output.add_argument("--json", dest="report_json", action="store_true", default=False,
                        help="print the figures as JSON")
    output.add_argument("--html", dest="report_html", metavar="FILE", default=None,
                        help="write a self-contained HTML report with charts to FILE")
    figures = parser.add_argument_group("figures")
    figures.add_argument("--apdex-t", dest="report_apdex_t", metavar="SECONDS", type=float,
                         default=APDEX_T, help=f"Apdex's T [default: {APDEX_T}]")
    figures.add_argument("--top", dest="report_top", metavar="N", type=int,
                         default=DEFAULT_TOP, help=f"endpoints per list [default: {DEFAULT_TOP}]")


def spec_from_args(args: argparse.Namespace, telemetry: TelemetryConfig,
                   now: datetime.datetime) -> ReportSpec:
    """The report's window and filters; ConfigError (exit 2) naming a bad option."""
    if args.report_apdex_t <= 0:
        raise ConfigError(f"--apdex-t = {args.report_apdex_t!r}: must be a positive number "
                          "of seconds, e.g. 0.5")
    if args.report_top < 1:
        raise ConfigError(f"--top = {args.report_top!r}: must be at least 1")
    namespace = args.report_namespace or telemetry.namespace
    return ReportSpec(
        window=make_window(args.report_since, args.report_from, args.report_to, now),
        namespace=None if namespace == ALL_NAMESPACES else namespace,
        version=args.report_version, route=args.report_route,
        apdex_t=args.report_apdex_t, top=args.report_top)


def run(args: argparse.Namespace, telemetry: TelemetryConfig, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Read and print (or write) the report; 0, or 1 when the database cannot be read."""
    out, err = out or sys.stdout, err or sys.stderr
    if not telemetry.postgres_string:
        raise ConfigError("telemetry.postgres_string: required for `faucet report`; pass "
                          "--telemetry-postgres-string postgresql://..., set "
                          "FAUCET_TELEMETRY_POSTGRES_STRING or [telemetry] postgres_string")
    spec = spec_from_args(args, telemetry, datetime.datetime.now(datetime.UTC))
    settings = connection_settings(telemetry.postgres_string, telemetry.sslmode,
                                   telemetry.sslcert, connect_timeout=telemetry.connect_timeout,
                                   statement_timeout=telemetry.statement_timeout)
    try:
        report = read_report(settings, spec)
    except ReportUnavailable as exc:
        print(f"faucet: report: {exc}", file=err)
        return EXIT_UNAVAILABLE
    if args.report_json:
        json.dump(to_json(report), out, indent=2)
        out.write("\n")
    elif args.report_html:
        path = Path(args.report_html)
        _write_html(path, report)
        print(f"faucet: report written to {path}", file=err)
    else:
        render_text(report, out.write, color=_colour(out))
    return 0


def _write_html(path: Path, report: dict[str, Any]) -> None:
    try:
        path.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html = {str(path)!r}: cannot write it: {exc.strerror}") from None


def _colour(out: TextIO) -> bool:
    """Bold headings only for a terminal, and never with NO_COLOR set."""
    return out.isatty() and not os.environ.get("NO_COLOR")
