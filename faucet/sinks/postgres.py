"""The ``postgres`` sink: binary COPY into ``faucet_http_events`` and ``faucet_log_events``
(one transaction per batch, so a retried batch is never stored twice).

Only ``faucet_http_events`` is required. Each connection looks the tables up first, so a
database set up from the HTTP table's documented DDL, or by the Rust server, works as
it is: without ``faucet_log_events`` the log events go to faucet's log instead (one
warning says so), and a log table without ``worker_route``/``worker_id`` (the Rust
server's) is written without them.

psycopg's ``AsyncConnection`` needs asyncio, so the sink drives a sync connection of its
own from worker threads. A database that stops answering must stall neither the batches
nor shutdown, so every blocking step is a call the sink can abandon: libpq's
``connect_timeout`` and the server's ``statement_timeout`` end most hangs with an error;
a call still silent after both together (a frozen network, where neither can fire), or
cut short by the caller's deadline (the shutdown flush), is left to its thread, which
keeps its connection, never starts a COPY's rows and closes the connection when it
returns, while the server is asked to cancel the query. A connection error drops the
connection and is reported as ``SinkUnavailable`` (``SinkHung`` for a timeout), so the
caller retries the batch on a fresh connection.

Messages are masked with ``faucet.redact``; ``pg_conninfo`` checks the connection string.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg import errors, sql

from faucet.errors import ConfigError
from faucet.events import COLUMNS, LOG_COLUMNS, HttpEvent, LogEvent
from faucet.redact import error_text
from faucet.sinks import SinkError, SinkHung, SinkUnavailable
from faucet.sinks.pg_conninfo import ConnectionSettings, connection_settings

if TYPE_CHECKING:
    from outcome import Outcome

    from faucet.config.settings import TelemetryConfig
    from faucet.events import Event

logger = logging.getLogger("faucet.telemetry")


class _Table:
    """Where one event type goes: the table and the columns faucet writes, with their
    types (binary COPY sends typed values, so these must be exactly the table's).
    ``optional`` columns may be absent (an older table); they are then not written."""

    def __init__(
        self, name: str, columns: Sequence[str], types: Sequence[str], optional: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.types = dict(zip(columns, types, strict=True))
        self.optional = frozenset(optional)

    def copy(self, columns: Sequence[str]) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(self.name), sql.SQL(", ").join(map(sql.Identifier, columns))
        )


HTTP_TABLE = _Table(
    "faucet_http_events",
    COLUMNS,
    ("uuid", "text", "text", "text", "text", "int4", "inet", "text", "text", "text",
     "text", "int2", "text", "int8", "timestamptz"),
)  # fmt: skip
LOG_TABLE = _Table(
    "faucet_log_events",
    LOG_COLUMNS,
    ("text", "text", "text", "timestamptz", "uuid", "uuid", "text", "text", "text", "jsonb",
     "text", "int4"),
    optional=("worker_route", "worker_id"),  # the Rust server's table has neither
)  # fmt: skip
TABLES = {HttpEvent: HTTP_TABLE, LogEvent: LOG_TABLE}
# Each expected column with what the table has under that name (NULL: no such column).
_COLUMNS_CHECK = """
SELECT e.name, e.type::regtype::text, a.atttypid::regtype::text
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS e(name, type, n)
LEFT JOIN pg_attribute a
  ON a.attrelid = to_regclass(%s) AND a.attname = e.name AND NOT a.attisdropped
ORDER BY e.n
"""
# libpq errors that mean "no answer in time": connect_timeout, statement_timeout (or our
# cancel of an abandoned call).
_TIMEOUTS = (errors.ConnectionTimeout, errors.QueryCanceled)


class SchemaMismatch(SinkUnavailable):
    """The table is missing or its columns differ: a ConfigError at start-up, an outage
    (retried until someone fixes the table) afterwards."""


class TableMissing(SchemaMismatch):
    """No such table (for ``faucet_log_events``, not an error: its events are logged)."""


class PostgresSink:
    """Binary COPY of each batch on one connection, reconnecting after failures."""

    event_types = tuple(TABLES)

    def __init__(self, settings: ConnectionSettings, patience: float) -> None:
        self._settings = settings
        self._patience = patience  # seconds a call may go unanswered before it is abandoned
        self._idle: psycopg.Connection | None = None  # between calls; a call takes it
        # Per event type, the columns its table has, as the last connection found them
        # (None: no such table, the events are logged instead).
        self._columns: dict[type, tuple[str, ...] | None] = {}
        self._warned = False  # about a missing faucet_log_events

    @classmethod
    async def open(cls, options: Mapping[str, Any], config: TelemetryConfig) -> PostgresSink:
        """Check the connection string and, if the database answers, the table."""
        if options:
            raise ConfigError(
                f"telemetry.sink_options: the postgres sink takes none (got {', '.join(options)})"
            )
        if not config.postgres_string:
            raise ConfigError("telemetry.postgres_string: required by the postgres sink")
        settings = connection_settings(
            config.postgres_string,
            config.sslmode,
            config.sslcert,
            connect_timeout=config.connect_timeout,
            statement_timeout=config.statement_timeout,
        )
        sink = cls(settings, settings.connect_timeout + config.statement_timeout)
        where = settings.describe()
        try:
            await sink._call(sink._connect)
        except SchemaMismatch as exc:
            raise ConfigError(f"telemetry database {where}: {exc}") from None
        except SinkUnavailable as exc:
            logger.warning(
                "telemetry database %s unreachable at start-up (%s); queueing events and retrying",
                where,
                exc,
            )
        return sink

    async def write_batch(self, events: Sequence[Event]) -> None:
        await self._call(self._copy, events)
        for event in events:
            if self._columns[type(event)] is None:
                logger.info(
                    "not stored (no table %s): %s", TABLES[type(event)].name, event.to_json()
                )

    async def aclose(self) -> None:
        conn, self._idle = self._idle, None
        if conn is not None:
            await trio.to_thread.run_sync(conn.close, abandon_on_cancel=True)

    async def _call(self, work: Callable[..., None], *args: Any) -> None:
        """Run ``work(call, *args)`` in a worker thread on the idle connection (or a new
        one); SinkHung if it does not return within ``patience``. Abandoned then, or
        when the caller cancels: the thread keeps the connection and closes it."""
        call = _Call(self._idle, self._settings.connect_timeout)
        self._idle = None
        done = False
        try:
            with trio.move_on_after(self._patience):
                self._idle = await trio.to_thread.run_sync(
                    _run, call, work, *args, abandon_on_cancel=True
                )
                done = True
        finally:
            if not done:
                self._idle = call.abandon()
        if not done:
            raise SinkHung(
                f"no answer within {self._patience:g} s (connect_timeout + statement_timeout)"
            )

    # The rest runs in worker threads, on the connection the call holds.

    def _connect(self, call: _Call) -> psycopg.Connection:
        """The call's connection, connecting and looking the tables up if needed."""
        if call.conn is None:
            try:
                call.attach(self._settings.connect())
                self._columns = {HttpEvent: _columns(call.conn, HTTP_TABLE),
                                 LogEvent: self._log_columns(call.conn)}  # fmt: skip
            except psycopg.Error as exc:
                raise _unavailable(exc) from None
        return call.conn

    def _log_columns(self, conn: psycopg.Connection) -> tuple[str, ...] | None:
        """``faucet_log_events``' columns, None (with one warning) when it is missing."""
        try:
            return _columns(conn, LOG_TABLE)
        except TableMissing as exc:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "telemetry: %s; meanwhile log events go to faucet's log "
                    "only (the table is looked up again on reconnecting)",
                    exc,
                )
            return None

    def _copy(self, call: _Call, events: Sequence[Event]) -> None:
        conn = self._connect(call)
        try:
            with conn.transaction(), conn.cursor() as cursor:
                for event_type, table in TABLES.items():
                    columns = self._columns[event_type]
                    batch = [event for event in events if type(event) is event_type]
                    if columns and batch:
                        _copy_rows(call, cursor, table, columns, batch)
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from None
        except psycopg.Error as exc:
            # A table changed under us is an outage to wait out (SchemaMismatch from
            # the re-check), or a batch to write again as the tables are now, not a
            # reason to lose this batch.
            call.drop()
            found = self._columns
            self._connect(call)
            if self._columns != found:
                raise SinkUnavailable(f"the tables changed: {error_text(exc)}") from None
            raise SinkError(error_text(exc)) from None


def _copy_rows(
    call: _Call, cursor: psycopg.Cursor, table: _Table, columns: Sequence[str], batch: list
) -> None:
    with cursor.copy(table.copy(columns)) as copy:
        if call.abandoned:  # the batch is being retried elsewhere: send CopyFail
            raise _Abandoned
        copy.set_types([table.types[name] for name in columns])
        row = operator.attrgetter(*columns)
        for event in batch:
            copy.write_row(row(event))


class _Abandoned(Exception):
    """Raised in a worker thread whose call was given up; nobody receives it."""


class _Call:
    """The connection of one blocking call, shared by its worker thread and the trio
    side that may abandon it. The lock makes "the thread is done" and "the caller gave
    up" exclusive, so exactly one side keeps the connection and a cancel request never
    meets a closed one."""

    def __init__(self, conn: psycopg.Connection | None, cancel_timeout: float) -> None:
        self.conn = conn
        self.abandoned = False
        self._finished = False
        self._cancel_timeout = cancel_timeout
        self._lock = threading.Lock()

    def attach(self, conn: psycopg.Connection) -> None:
        """Worker thread: use ``conn`` from now on (closed at once if given up)."""
        with self._lock:
            if self.abandoned:
                conn.close()
                raise _Abandoned
            self.conn = conn

    def drop(self) -> None:
        """Worker thread: close the connection, its state unknown after an error."""
        with self._lock:
            self._close()

    def finish(self) -> psycopg.Connection | None:
        """Worker thread, last: the connection to keep idle, None if given up."""
        with self._lock:
            self._finished = True
            if self.abandoned:
                self._close()
            return self.conn

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def abandon(self) -> psycopg.Connection | None:
        """Trio side: give the call up and ask the server to cancel its query. Returns
        the connection a thread that finished just now kept (its result never arrived).

        The cancel request connects to the server, so it may block (up to
        ``connect_timeout``): it runs in a thread of trio's cache that nobody waits for.
        Its only effect is to end the server's work early; without it the thread still
        sends no rows and closes the connection once the server answers.
        """
        with self._lock:
            if self._finished:
                return self.conn
            self.abandoned = True
            if self.conn is None:
                return None
        trio.lowlevel.start_thread_soon(self._cancel, _cancel_done)
        return None

    def _cancel(self) -> None:
        with self._lock:
            if not self._finished and self.conn is not None:
                self.conn.cancel_safe(timeout=self._cancel_timeout)


def _run(call: _Call, work: Callable[..., None], *args: Any) -> psycopg.Connection | None:
    """Worker thread: ``work``, then hand back the connection to keep (None after an error)."""
    try:
        work(call, *args)
    except BaseException:
        call.drop()
        raise
    finally:
        conn = call.finish()
    return conn


def _cancel_done(result: Outcome) -> None:
    try:
        result.unwrap()
    except Exception as exc:
        logger.debug("telemetry: cancelling an abandoned query failed: %s", error_text(exc))


def _unavailable(exc: psycopg.Error) -> SinkUnavailable:
    kind = SinkHung if isinstance(exc, _TIMEOUTS) else SinkUnavailable
    return kind(error_text(exc))


def _columns(conn: psycopg.Connection, table: _Table) -> tuple[str, ...]:
    """The columns faucet writes that ``table`` has. TableMissing when there is no such
    table, SchemaMismatch when one of its columns has another type or a required one is
    missing."""
    found, search_path = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, current_setting('search_path')", (table.name,)
    ).fetchone()
    if not found:
        raise TableMissing(
            f"table {table.name} not found (search_path: {search_path}); "
            "create it with `faucet telemetry init`"
        )
    names, types = list(table.types), list(table.types.values())
    rows = conn.execute(_COLUMNS_CHECK, (names, types, table.name)).fetchall()
    problems = [
        f"{name} is {actual}, expected {expected}" if actual else f"{name} ({expected}) is missing"
        for name, expected, actual in rows
        if actual != expected and (actual or name not in table.optional)
    ]
    if problems:
        raise SchemaMismatch(
            f"table {table.name} does not match faucet's schema: {'; '.join(problems)}"
        )
    return tuple(name for name, _expected, actual in rows if actual)
