"""What ``faucet report`` asks for, decided without a database: the time window, the
filters, the width of the over-time buckets, how paths are grouped into endpoints, and the
small pieces of arithmetic (Apdex, ratios, ISO times) the sections share.

Pure: no I/O, no psycopg; ``report_query`` turns a ``ReportSpec`` into SQL.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import attrs

from faucet.errors import ConfigError

UTC = datetime.UTC
# Apdex's T by default: a request answered within T is "satisfied", within 4T
# "tolerating", slower (or answered 5xx) "frustrated". 0.5 s is the usual web default.
APDEX_T = 0.5
DEFAULT_SINCE = "24h"
DEFAULT_TOP = 20  # endpoints per list
# The "slowest endpoints" list ranks by p95 only endpoints called at least this often: a
# p95 of a handful of calls is one unlucky request.
SLOW_MIN_CALLS = 20
# A client's WebSocket upgrade is recorded with status 101 once the session ends: its
# ``elapsed`` is the session's length, so it is a session, never a latency.
WEBSOCKET_STATUS = 101
# What faucet answers itself: 502 the worker broke the exchange, 503 no worker came free
# (no worker recorded), 504 the worker did not answer in time.
GATEWAY_STATUSES = (502, 503, 504)
# The seconds before a worker's exit whose requests a crash lists.
CRASH_LOOKBACK = 60

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)
# Over-time bucket widths (seconds) to choose from: the narrowest giving <= MAX_BUCKETS.
BUCKET_WIDTHS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                 7 * 86400)
MAX_BUCKETS = 60

# Path segments that name one thing among many, and what an endpoint shows instead.
# Each pattern matches a whole segment: after a "/" and before the next "/" or the end.
# Applied in Python once per distinct path: PostgreSQL's regex engine took ~20 us per
# row for the UUID pattern, seconds for a million rows.
PATH_PATTERNS: tuple[tuple[str, str], ...] = (
    ("/[0-9]+(?=/|$)", "/:id"),
    ("/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)",
     "/:uuid"),
)
_COMPILED = tuple((re.compile(pattern), replacement) for pattern, replacement in PATH_PATTERNS)
_DIGIT = re.compile("[0-9]")


def normalise_path(path: str) -> str:
    """``/users/42/orders/9f1c...`` -> ``/users/:id/orders/:uuid``: a segment of only
    digits becomes ``:id``, a UUID ``:uuid``; everything else stays as it is."""
    if "-" not in path and not _DIGIT.search(path):  # no id, no UUID: the cheap answer
        return path
    for pattern, replacement in _COMPILED:
        path = pattern.sub(replacement, path)
    return path


@attrs.frozen
class Window:
    """The half-open interval ``[start, end)`` of ``time`` the report covers (UTC)."""

    start: datetime.datetime
    end: datetime.datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@attrs.frozen
class ReportSpec:
    """Everything the queries need: the window, the filters (None: no filter) and the
    settings that shape the figures."""

    window: Window
    namespace: str | None = None  # None: every namespace
    version: str | None = None
    route: str | None = None
    apdex_t: float = APDEX_T  # seconds
    top: int = DEFAULT_TOP

    @property
    def bucket_seconds(self) -> int:
        return choose_bucket(self.window.seconds)

    def describe(self) -> dict[str, Any]:
        """The spec as it appears in the report (and its JSON)."""
        return {
            "from": iso(self.window.start), "to": iso(self.window.end),
            "namespace": self.namespace, "version": self.version, "route": self.route,
            "apdex_t_seconds": self.apdex_t, "bucket_seconds": self.bucket_seconds,
        }  # fmt: skip


def parse_since(text: str) -> float:
    """``90s``, ``15m``, ``24h``, ``7d``, ``2w`` -> seconds; ConfigError naming the value."""
    match = _SINCE.fullmatch(text)
    if not match or float(match[1]) <= 0:
        raise ConfigError(f"--since = {text!r}: expected a positive number with a unit "
                          "s, m, h, d or w (e.g. 15m, 24h, 7d)")
    return float(match[1]) * _UNITS[match[2].lower()]


def parse_time(option: str, text: str) -> datetime.datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} = {text!r}: expected an ISO 8601 date or time, e.g. "
                          "2024-05-01, 2024-05-01T13:00 or 2024-05-01T13:00:00+02:00 "
                          "(no zone: UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def make_window(since: str | None, start: str | None, end: str | None,
                now: datetime.datetime) -> Window:
    """The window from ``--since`` or ``--from``/``--to`` (not both); the default is the
    last ``DEFAULT_SINCE``. ``--from`` alone runs to now; ``--to`` alone looks back
    ``DEFAULT_SINCE`` from it."""
    if since is not None and (start is not None or end is not None):
        raise ConfigError("--since cannot be combined with --from/--to: give either a "
                          "length back from now (--since 24h) or a range (--from T --to T)")
    if start is None and end is None:
        seconds = parse_since(since or DEFAULT_SINCE)
        return Window(now - datetime.timedelta(seconds=seconds), now)
    stop = parse_time("--to", end) if end is not None else now
    begin = (parse_time("--from", start) if start is not None
             else stop - datetime.timedelta(seconds=parse_since(DEFAULT_SINCE)))
    if begin >= stop:
        raise ConfigError(f"--from = {iso(begin)!r}: must be before --to ({iso(stop)})")
    return Window(begin, stop)


def choose_bucket(seconds: float) -> int:
    """The narrowest width in ``BUCKET_WIDTHS`` that cuts ``seconds`` into at most
    ``MAX_BUCKETS`` buckets (the widest one for longer windows)."""
    for width in BUCKET_WIDTHS:
        if seconds / width <= MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS[-1]


def bucket_starts(window: Window, width: int) -> list[datetime.datetime]:
    """Every bucket that overlaps ``window``, aligned on multiples of ``width`` since
    2000-01-01 UTC (as ``date_bin``/``time_bucket`` with that origin align them)."""
    origin = datetime.datetime(2000, 1, 1, tzinfo=UTC)
    first = (window.start - origin).total_seconds() // width * width
    starts, at = [], origin + datetime.timedelta(seconds=first)
    while at < window.end:
        starts.append(at)
        at += datetime.timedelta(seconds=width)
    return starts


def apdex(satisfied: int, tolerating: int, total: int) -> float | None:
    """(satisfied + tolerating / 2) / total; None without requests."""
    return (satisfied + tolerating / 2) / total if total else None


def ratio(part: float | None, whole: float | None) -> float | None:
    return part / whole if part is not None and whole else None


def iso(moment: datetime.datetime | None) -> str | None:
    """UTC, seconds or milliseconds, with a Z."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
