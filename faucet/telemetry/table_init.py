"""``faucet telemetry init``: create ``faucet_http_events`` and ``faucet_log_events`` (and
optionally a hypertable).

The DDL lives in the repository's ``sql/`` directory, the one source users can also run
with psql. ``faucet/sql`` links to it in a checkout and holds a copy in a wheel, so the
scripts are package data however faucet is installed.
"""

from __future__ import annotations

from importlib.resources import files

import psycopg

from faucet.errors import ConfigError
from faucet.redact import error_text
from faucet.sinks.pg_conninfo import connection_settings

SQL_DIR = files("faucet") / "sql"


TABLES = ("faucet_http_events", "faucet_log_events")


def init_table(
    conn_string: str,
    sslmode: str | None,
    sslcert: str | None,
    timescale: bool,
    connect_timeout: int | None = None,
) -> list[str]:
    """Create the tables that do not exist; with ``timescale``, make
    ``faucet_http_events`` a hypertable. Returns a line for each table: created, or found
    and left as it was.

    Blocking (run it outside trio). ConfigError, without the password, on any failure.
    No statement timeout: turning a full table into a hypertable may take long.
    """
    scripts = [_read(f"{table}.sql") for table in TABLES]
    if timescale:
        scripts.append(_read("timescaledb.sql"))
    settings = connection_settings(conn_string, sslmode, sslcert, connect_timeout=connect_timeout)
    where = settings.describe()
    try:
        with settings.connect() as conn:
            existed = [conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()[0]
                       for table in TABLES]
            for script in scripts:
                conn.execute(script)
    except psycopg.Error as exc:
        raise ConfigError(f"telemetry init on {where}: {error_text(exc)}") from None
    lines = [f"{table}: {'found, left as it was' if found else 'created'} in {where}"
             for table, found in zip(TABLES, existed, strict=True)]
    if timescale:
        lines.append(f"faucet_http_events: a TimescaleDB hypertable on time in {where}")
    return lines


def _read(name: str) -> str:
    return (SQL_DIR / name).read_text()
