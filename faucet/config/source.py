"""Where settings come from and how a problem with one reads.

Shared by ``config`` (faucet.toml, env, CLI) and ``routes_config`` (``[[route]]`` tables,
frouter.toml), so both word their problems the same way and neither imports the other's
loader.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from faucet.errors import ConfigError


def read_toml(path: Path) -> dict:
    """The parsed file; ConfigError when it cannot be read or is not valid TOML."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def problem_line(key: str, shown_value: str | None, message: str, source: str = "") -> str:
    """How every config problem reads: ``key = value (from SOURCE): what is allowed``."""
    shown = f"{key} = {shown_value}" if shown_value is not None else key
    return f"{shown}{f' (from {source})' if source else ''}: {message}"
