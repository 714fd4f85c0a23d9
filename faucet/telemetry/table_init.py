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


def init_table(
    conn_string: str,
    sslmode: str | None,
    sslcert: str | None,
    timescale: bool,
    connect_timeout: int | None = None,
) -> None:
    """Create the tables that do not exist; with ``timescale``, make
    ``faucet_http_events`` a hypertable.

    Blocking (run it outside trio). ConfigError, without the password, on any failure.
    No statement timeout: turning a full table into a hypertable may take long.
    """
    scripts = [_read("faucet_http_events.sql"), _read("faucet_log_events.sql")]
    if timescale:
        scripts.append(_read("timescaledb.sql"))
    settings = connection_settings(conn_string, sslmode, sslcert, connect_timeout=connect_timeout)
    try:
        with settings.connect() as conn:
            for script in scripts:
                conn.execute(script)
    except psycopg.Error as exc:
        raise ConfigError(
            f"telemetry init on {settings.describe()}: {error_text(exc)}"
        ) from None


def _read(name: str) -> str:
    return (SQL_DIR / name).read_text()
