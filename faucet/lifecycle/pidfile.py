"""A running faucet's pid file, and ``faucet reload``, which finds faucet through it."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from faucet.config.settings import Config
from faucet.errors import ConfigError

log = logging.getLogger("faucet")


def pid_path(config: Config) -> Path:
    """``pid_file``, or by default ``faucet-HOST-PORT.pid`` in the temporary directory:
    the same settings find the same faucet."""
    if config.pid_file:
        return Path(config.pid_file)
    return Path(tempfile.gettempdir()) / f"faucet-{re.sub(r'[^A-Za-z0-9.]', '-', config.host)}.pid"


@contextlib.contextmanager
def pid_file(config: Config) -> Iterator[None]:
    """Write faucet's pid while it runs; a file that cannot be written is a warning
    (``faucet reload`` then cannot find this faucet; SIGHUP still works)."""
    path = pid_path(config)
    try:
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("pid_file = %r: cannot write it (%s); `faucet reload` will not find "
                    "this faucet (send it SIGHUP instead)", str(path), exc.strerror)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def signal_reload(config: Config) -> int:
    """Send SIGHUP to the faucet whose pid file these settings name."""
    path = pid_path(config)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"pid_file = {str(path)!r}: no running faucet found there ({exc}); "
                          "give `faucet reload` the same --host or --pid-file as the faucet "
                          "to reload") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ConfigError(f"pid_file = {str(path)!r}: faucet (pid {pid}) is not running "
                          "(a stale pid file)") from None
    print(f"faucet (pid {pid}) asked to reload; its log says what changed")
    return 0
