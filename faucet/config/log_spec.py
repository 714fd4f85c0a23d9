"""``log_level`` (and the Rust server's ``FAUCET_LOG``) in env_logger's syntax.

``warn``, ``DEBUG``, ``faucet=debug,hypercorn=warn``, ``info,faucet.access=off``,
``info/timeout``: a bare level is the default for every logger; ``target=level`` sets the
Python logger of that name (its children follow it; ``target=`` means every level);
after ``/``, a regular expression keeps only the lines whose message matches it. Directives
without a bare level switch everything else off, as env_logger does. ``trace`` is DEBUG
(Python has nothing finer), ``off`` is above CRITICAL. Pure: nothing is applied here.
"""

from __future__ import annotations

import logging
import re

from attrs import frozen

OFF = logging.CRITICAL + 10
LEVELS = {
    "off": OFF,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,  # Python's spelling, accepted as well
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}
ALLOWED = ("a level (off, error, warn, info, debug, trace, in any case) and/or "
           "target=level directives separated by commas, like faucet=debug,hypercorn=warn")


@frozen
class LogSpec:
    """``default`` for every logger, ``targets`` as (logger name, level), in spec order."""

    default: int
    targets: tuple[tuple[str, int], ...] = ()
    pattern: re.Pattern[str] | None = None


def parse_log_spec(text: str) -> LogSpec:
    """The spec ``text`` as Python levels; ValueError saying what is allowed."""
    directives, slash, regex = text.partition("/")
    default = None
    targets = []
    for directive in filter(None, (part.strip() for part in directives.split(","))):
        name, equals, level = (part.strip() for part in directive.partition("="))
        if not equals and name.lower() in LEVELS:
            default = LEVELS[name.lower()]
        elif not equals:
            # env_logger would take a lone word as a target and silence the rest; here a
            # typo like "inof" must not switch logging off.
            raise ValueError(f"{name!r} is not a level (for every level of the logger "
                             f"{name}, write {name}=trace); expected {ALLOWED}")
        elif not name:
            raise ValueError(f"{directive!r} names no target; expected {ALLOWED}")
        elif level and level.lower() not in LEVELS:
            raise ValueError(f"unknown level {level!r} for {name}; expected {ALLOWED}")
        else:
            targets.append((name, LEVELS[(level or "trace").lower()]))
    if default is None and not targets:
        raise ValueError(f"expected {ALLOWED}")
    try:
        pattern = re.compile(regex) if slash else None
    except re.error as exc:
        raise ValueError(f"the filter after '/' is not a regular expression: {exc}") from None
    return LogSpec(OFF if default is None else default, tuple(targets), pattern)
