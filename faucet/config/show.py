"""``faucet config show``: the settings in effect, as faucet.toml lines, each with where its
value came from (``default``, the file, the variable or the flag). Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from faucet.config.settings import SINK_OPTIONS, Loaded, TelemetryConfig
from faucet.redact import redact

_TABLES = ("telemetry", "route")


def render(loaded: Loaded) -> str:
    """Top-level settings, ``[telemetry]``, its sink options and the ``[[route]]`` tables
    of faucet.toml; a setting that is unset shows commented out. Passwords are masked."""
    config, origin = loaded.config, loaded.origin
    lines = _table(config, "", origin)
    lines += ["", "[telemetry]", *_table(config.telemetry, "telemetry.", origin)]
    options = config.telemetry.sink_options
    if options:
        lines += ["", "[telemetry.sink_options]"]
        lines += [_entry(name, value, origin.get(f"{SINK_OPTIONS}.{name}")
                         or origin.get(SINK_OPTIONS, "default")) for name, value in options.items()]
    for route in config.route:
        lines += ["", "[[route]]"]
        lines += [_entry(field.name, getattr(route, field.name), origin.get("route", "default"))
                  for field in attrs.fields(type(route)) if getattr(route, field.name) is not None]
    return "\n".join(lines) + "\n"


def _table(obj: Any, prefix: str, origin: Mapping[str, str]) -> list[str]:
    return [_entry(field.name, getattr(obj, field.name),
                   origin.get(prefix + field.name, "default"))
            for field in attrs.fields(type(obj))
            if field.name not in _TABLES and not (
                isinstance(obj, TelemetryConfig) and field.name == "sink_options")]


def _entry(name: str, value: Any, source: str) -> str:
    if value is None:
        return f"# {name} = (unset)  # {source}"
    return f"{name} = {redact(_toml(value))}  # {source}"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not hasattr(value, "spelling"):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string (sizes keep their spelling)
