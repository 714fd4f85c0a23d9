"""The ``postgres`` sink: binary COPY into ``faucet_http_events``.

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
from faucet.events import COLUMNS
from faucet.redact import error_text
from faucet.sinks import SinkError, SinkHung, SinkUnavailable
from faucet.sinks.pg_conninfo import ConnectionSettings, connection_settings

if TYPE_CHECKING:
    from outcome import Outcome

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
# libpq errors that mean "no answer in time": connect_timeout, statement_timeout (or our
# cancel of an abandoned call).
_TIMEOUTS = (errors.ConnectionTimeout, errors.QueryCanceled)


class SchemaMismatch(SinkUnavailable):
    """The table is missing or its columns differ: a ConfigError at start-up, an outage
    (retried until someone fixes the table) afterwards."""


class PostgresSink:
    """Binary COPY of each batch on one connection, reconnecting after failures."""

    def __init__(self, settings: ConnectionSettings, patience: float) -> None:
        self._settings = settings
        self._patience = patience  # seconds a call may go unanswered before it is abandoned
        self._idle: psycopg.Connection | None = None  # between calls; a call takes it

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

    async def write_batch(self, events: Sequence[HttpEvent]) -> None:
        await self._call(self._copy, events)

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
        """The call's connection, connecting and checking the table if needed."""
        if call.conn is None:
            try:
                call.attach(self._settings.connect())
                _check_table(call.conn)
            except psycopg.Error as exc:
                raise _unavailable(exc) from None
        return call.conn

    def _copy(self, call: _Call, events: Sequence[HttpEvent]) -> None:
        conn = self._connect(call)
        try:
            with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
                if call.abandoned:  # the batch is being retried elsewhere: send CopyFail
                    raise _Abandoned
                copy.set_types(list(COLUMN_TYPES.values()))
                for event in events:
                    copy.write_row(_ROW(event))
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from None
        except psycopg.Error as exc:
            # A table changed under us is an outage to wait out (SchemaMismatch from
            # the re-check), not a reason to lose this batch.
            call.drop()
            self._connect(call)
            raise SinkError(error_text(exc)) from None


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
