"""The postgres sink's connection string: checked once, shown without its password, and
turned into psycopg's connect arguments with faucet's timeouts.

A URI that libpq would read differently from how it looks (an unencoded '@' or '/' in the
password) is refused: libpq would then show pieces of the password as the host, port or
database name, where no masking can find them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict, timeout_from_conninfo

from faucet.errors import ConfigError
from faucet.redact import error_text, redact

# libpq defaults to waiting forever; these apply unless the connection string sets them.
_DEFAULTS = {"application_name": "faucet", "tcp_user_timeout": "30000"}
_URI_PREFIXES = ("postgresql://", "postgres://")


@attrs.frozen
class ConnectionSettings:
    """A validated connection string plus the keyword arguments faucet adds to it."""

    conninfo: str
    kwargs: Mapping[str, Any]
    connect_timeout: int  # seconds psycopg waits for each connection attempt

    def describe(self) -> str:
        """``user@host:port/dbname`` as far as the string says; never the password."""
        params = conninfo_to_dict(self.conninfo)
        user = f"{params['user']}@" if params.get("user") else ""
        port = f":{params['port']}" if params.get("port") else ""
        host = params.get("host") or params.get("hostaddr") or "localhost"
        return f"{user}{host}{port}/{params.get('dbname', '')}"

    def connect(self) -> psycopg.Connection:
        """Blocking; call from a worker thread or outside trio."""
        return psycopg.connect(self.conninfo, **self.kwargs)


def connection_settings(
    conn_string: str,
    sslmode: str | None,
    sslcert: str | None,
    *,
    connect_timeout: int | None = None,
    statement_timeout: float | None = None,
) -> ConnectionSettings:
    """Parse the connection string and apply faucet's settings; ConfigError if unusable.

    ``sslcert`` is the CA certificate that verifies the server (libpq's ``sslrootcert``).
    ``connect_timeout`` (s) applies unless the string sets one; ``statement_timeout`` (s)
    goes first in the server ``options``, so a ``-c statement_timeout`` there still wins.
    """
    try:
        params = conninfo_to_dict(conn_string)
    except psycopg.Error:
        raise ConfigError(
            "telemetry.postgres_string: not a valid PostgreSQL connection string: "
            + _parse_problem(conn_string)
        ) from None
    if conn_string.lstrip().startswith(_URI_PREFIXES) and _misread(conn_string, params):
        raise ConfigError(
            "telemetry.postgres_string: libpq reads this URI differently from how it is "
            "written: percent-encode '@', '/' and ':' inside the user name, password and "
            "database name (%40, %2F, %3A)"
        )
    if sslcert and not os.path.isfile(sslcert):
        raise ConfigError(f"telemetry.sslcert = {sslcert!r}: no such file (the server's CA)")
    kwargs: dict[str, Any] = {"autocommit": True}
    kwargs |= {key: value for key, value in _DEFAULTS.items() if key not in params}
    if connect_timeout is not None and "connect_timeout" not in params:
        kwargs["connect_timeout"] = str(connect_timeout)
    if statement_timeout is not None:
        milliseconds = max(1, round(statement_timeout * 1000))  # 0 would mean "no limit"
        own = params.get("options", "")
        kwargs["options"] = f"-c statement_timeout={milliseconds} {own}".rstrip()
    if sslmode:
        kwargs["sslmode"] = sslmode
    if sslcert:
        kwargs["sslrootcert"] = sslcert
    return ConnectionSettings(conn_string, kwargs, timeout_from_conninfo({**params, **kwargs}))


def _parse_problem(conn_string: str) -> str:
    """libpq's complaint, from the string with its password masked: libpq quotes the
    part it cannot read, and that part may be the password."""
    try:
        conninfo_to_dict(redact(conn_string))
    except psycopg.Error as exc:
        return error_text(exc)
    return (
        "the password is not written the way libpq reads it (in a URI, percent-encode "
        "spaces and '%' as %20 and %25; in key=value form, quote it: password='...')"
    )


def _misread(uri: str, params: Mapping[str, str]) -> bool:
    """True when an unencoded '@' or '/' in the password moved part of it into the host,
    port or database name: libpq ends the credentials at the first '@' or '/', so more
    than one '@' before the query, or one that did not end a user name, is misplaced."""
    ats = uri.partition("://")[2].partition("?")[0].count("@")
    ports = params.get("port", "").split(",")
    return (
        ats > 1
        or (ats == 1 and not params.get("user"))
        or "@" in params.get("host", "")
        or not all(port.strip().isdigit() or not port for port in ports)
    )
