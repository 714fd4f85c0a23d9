"""The ``postgres`` sink: binary COPY into ``faucet_http_events``.

psycopg's ``AsyncConnection`` needs asyncio, so the sink drives a sync connection of its
own from a worker thread. A started COPY is allowed to finish (a cancelled thread would not
stop the query anyway); ``connect_timeout`` and ``tcp_user_timeout`` bound how long a dead
network can hold it. A connection error drops the connection and is reported as
``SinkUnavailable``, so the caller retries the batch on a fresh connection.

The password is never shown: every message built from the connection string or from a
psycopg error goes through ``faucet.redact``, and a URI that libpq would read differently
from how it looks (an unencoded '@' or '/' in the password) is refused up front, since
libpq would then show parts of the password as the host, port or database name.
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import psycopg
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from faucet.errors import ConfigError
from faucet.events import COLUMNS
from faucet.redact import error_text, redact
from faucet.sinks import SinkError, SinkUnavailable

if TYPE_CHECKING:
    from faucet.config import TelemetryConfig
    from faucet.events import HttpEvent

logger = logging.getLogger("faucet.telemetry")

TABLE = "faucet_http_events"
# Binary COPY sends typed values, so these must be exactly the table's column types.
COLUMN_TYPES = dict(
    zip(
        COLUMNS,
        ("uuid", "text", "text", "text", "text", "int4", "inet", "text", "text", "text",
         "text", "int2", "text", "int8", "timestamptz"),
        strict=True,
    )
)  # fmt: skip
_COPY = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.Identifier(TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)
_ROW = operator.attrgetter(*COLUMNS)
# Each expected column with what the table has under that name (NULL: no such column).
_COLUMNS_CHECK = """
SELECT e.name, e.type::regtype::text, a.atttypid::regtype::text
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS e(name, type, n)
LEFT JOIN pg_attribute a
  ON a.attrelid = to_regclass(%s) AND a.attname = e.name AND NOT a.attisdropped
ORDER BY e.n
"""
# libpq defaults to waiting forever; these apply unless the connection string sets them.
_DEFAULTS = {"application_name": "faucet", "connect_timeout": "5", "tcp_user_timeout": "30000"}
_URI_PREFIXES = ("postgresql://", "postgres://")


class SchemaMismatch(SinkUnavailable):
    """The table is missing or its columns differ: a ConfigError at start-up, an outage
    (retried until someone fixes the table) afterwards."""


@attrs.frozen
class ConnectionSettings:
    """A validated connection string plus the keyword arguments faucet adds to it."""

    conninfo: str
    kwargs: Mapping[str, Any]

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
    conn_string: str, sslmode: str | None, sslcert: str | None
) -> ConnectionSettings:
    """Parse the connection string and apply sslmode / sslcert; ConfigError if unusable.

    ``sslcert`` is the CA certificate that verifies the server (libpq's ``sslrootcert``).
    """
    try:
        params = conninfo_to_dict(conn_string)
    except psycopg.Error:
        raise ConfigError(
            "telemetry.postgres_string: not a valid PostgreSQL connection string: "
            + _parse_problem(conn_string)
        ) from None
    if conn_string.lstrip().startswith(_URI_PREFIXES) and _misread(params):
        raise ConfigError(
            "telemetry.postgres_string: libpq reads this URI differently from how it is "
            "written: percent-encode '@', '/' and ':' in the user name and password "
            "(%40, %2F, %3A)"
        )
    if sslcert and not os.path.isfile(sslcert):
        raise ConfigError(f"telemetry.sslcert = {sslcert!r}: no such file (the server's CA)")
    kwargs: dict[str, Any] = {"autocommit": True}
    kwargs |= {key: value for key, value in _DEFAULTS.items() if key not in params}
    if sslmode:
        kwargs["sslmode"] = sslmode
    if sslcert:
        kwargs["sslrootcert"] = sslcert
    return ConnectionSettings(conn_string, kwargs)


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


def _misread(params: Mapping[str, str]) -> bool:
    """True when an unencoded '@' or '/' in the password moved part of it into the host,
    port or database name (no host has an '@', no port is anything but digits)."""
    ports = params.get("port", "").split(",")
    return (
        "@" in params.get("host", "")
        or "@" in params.get("dbname", "")
        or not all(port.strip().isdigit() or not port for port in ports)
    )


class PostgresSink:
    """Binary COPY of each batch on one connection, reconnecting after failures."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection | None = None

    @classmethod
    async def open(cls, options: Mapping[str, Any], config: TelemetryConfig) -> PostgresSink:
        """Check the connection string and, if the database is reachable, the table."""
        if options:
            raise ConfigError(
                f"telemetry.sink_options: the postgres sink takes none (got {', '.join(options)})"
            )
        if not config.postgres_string:
            raise ConfigError("telemetry.postgres_string: required by the postgres sink")
        sink = cls(connection_settings(config.postgres_string, config.sslmode, config.sslcert))
        where = sink._settings.describe()
        try:
            await trio.to_thread.run_sync(sink._connection)
        except SchemaMismatch as exc:
            raise ConfigError(f"telemetry database {where}: {exc}") from None
        except SinkUnavailable as exc:
            logger.warning(
                "telemetry database %s unreachable at start-up (%s); queueing events and retrying",
                where,
                exc,
            )
        return sink

    async def write_batch(self, events: Sequence[HttpEvent]) -> None:
        await trio.to_thread.run_sync(self._copy, events)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._disconnect)

    def _copy(self, events: Sequence[HttpEvent]) -> None:
        conn = self._connection()
        try:
            with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
                copy.set_types(list(COLUMN_TYPES.values()))
                for event in events:
                    copy.write_row(_ROW(event))
        except Exception as exc:
            self._disconnect()  # its state is unknown; the next batch starts afresh
            if isinstance(exc, psycopg.OperationalError):
                raise SinkUnavailable(error_text(exc)) from None
            if isinstance(exc, psycopg.Error):
                # A table changed under us is an outage to wait out (SchemaMismatch from
                # the re-check), not a reason to lose this batch.
                self._connection()
                raise SinkError(error_text(exc)) from None
            raise

    def _connection(self) -> psycopg.Connection:
        """The open connection, connecting and checking the table if needed."""
        if self._conn is None or self._conn.closed:
            try:
                conn = self._settings.connect()
            except psycopg.Error as exc:
                raise SinkUnavailable(error_text(exc)) from None
            try:
                _check_table(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _check_table(conn: psycopg.Connection) -> None:
    """SchemaMismatch unless ``faucet_http_events`` has every column with its type."""
    names, types = list(COLUMN_TYPES), list(COLUMN_TYPES.values())
    found, search_path = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, current_setting('search_path')", (TABLE,)
    ).fetchone()
    if not found:
        raise SchemaMismatch(
            f"table {TABLE} not found (search_path: {search_path}); "
            "create it with `faucet telemetry init`"
        )
    rows = conn.execute(_COLUMNS_CHECK, (names, types, TABLE)).fetchall()
    problems = [
        f"{name} is {actual}, expected {expected}" if actual else f"{name} ({expected}) is missing"
        for name, expected, actual in rows
        if actual != expected
    ]
    if problems:
        raise SchemaMismatch(f"table {TABLE} does not match faucet's schema: {'; '.join(problems)}")
