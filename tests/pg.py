"""PostgreSQL fixtures: a server for the session, a fresh schema per test.

The server is ``$FAUCET_TEST_POSTGRES`` (default: the trust-auth one at 127.0.0.1:5432,
database ``test``) when it answers; otherwise pytest-postgresql starts a throwaway one.
Tests get a connection string whose ``search_path`` is their own schema, so every test
has its own ``faucet_http_events`` and they cannot see each other's rows.

Load it as a plugin (``pytest_plugins = ["tests.pg"]``) so that ``pg_proc`` is found too:
``pg_server`` asks for it by name only when it needs a server of its own. Test modules
also import ``query`` from here, hence no assertion rewriting (PYTEST_DONT_REWRITE).
"""

from __future__ import annotations

import glob
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import trio
from psycopg.conninfo import make_conninfo
from pytest_postgresql import factories

from faucet.config.settings import TelemetryConfig
from faucet.errors import ConfigError
from faucet.telemetry.recorder import serve_telemetry
from faucet.telemetry.table_init import init_table

DEFAULT_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=test"
_PG_CTL = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))

pg_proc = factories.postgresql_proc(executable=_PG_CTL[-1] if _PG_CTL else None, port=None)


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> str:
    """Connection string of a server where we may create and drop schemas."""
    conninfo = os.environ.get("FAUCET_TEST_POSTGRES", DEFAULT_SERVER)
    try:
        psycopg.connect(conninfo, connect_timeout=3).close()
        return conninfo
    except psycopg.OperationalError:
        pass
    try:
        proc = request.getfixturevalue("pg_proc")
    except Exception as exc:  # no binaries, or running as root (postgres refuses)
        pytest.skip(f"no PostgreSQL reachable at {conninfo!r} and cannot start one: {exc}")
    return make_conninfo(
        host=proc.host, port=proc.port, user=proc.user, password=proc.password or None,
        dbname="postgres",
    )  # fmt: skip


@pytest.fixture
def pg_empty_dsn(pg_server: str) -> Iterator[str]:
    """A connection string whose search_path is a new, empty schema (dropped afterwards)."""
    schema = f"faucet_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield make_conninfo(pg_server, options=f"-csearch_path={schema}")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_dsn(pg_empty_dsn: str) -> str:
    """Like ``pg_empty_dsn`` with ``faucet_http_events`` created by ``init_table``."""
    init_table(pg_empty_dsn, None, None, timescale=False)
    return pg_empty_dsn


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one statement, [] if it returns none (blocking: for set-up and checks)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


async def start_up_error(dsn: str) -> str:
    """The ConfigError faucet's telemetry must refuse to start with on ``dsn``."""
    async with trio.open_nursery() as nursery:
        with pytest.raises(ConfigError) as info:
            await nursery.start(serve_telemetry, TelemetryConfig(postgres_string=dsn))
    return str(info.value)
