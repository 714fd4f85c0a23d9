"""``redact``: no password survives, whatever form the connection string takes (pure)."""

from __future__ import annotations

import pytest

from faucet.cli import main
from faucet.config.settings import load_config
from faucet.errors import ConfigError
from faucet.redact import redact
from faucet.sinks.pg_conninfo import connection_settings

# (text, expected); every "S3CR" below is (part of) a password and must disappear.
CASES = [
    # URIs: any scheme, any case; the password runs to the LAST '@'.
    ("postgresql://u:S3CR@db:5432/metrics", "postgresql://u:***@db:5432/metrics"),
    ("POSTGRESQL://u:S3CR@db/metrics", "POSTGRESQL://u:***@db/metrics"),
    ("PostgreSQL://u:S3CR@db", "PostgreSQL://u:***@db"),
    ("postgres://u:S3CR@db", "postgres://u:***@db"),
    ("mysql://root:S3CR@db/x", "mysql://root:***@db/x"),
    ("https://u:S3CR@example.org/", "https://u:***@example.org/"),
    ("redis://:S3CR@cache:6379", "redis://:***@cache:6379"),
    ("postgresql://u:p@S3CR@db/m", "postgresql://u:***@db/m"),
    ("postgresql://u:S3CR@@@db/m", "postgresql://u:***@db/m"),
    ("postgresql://u:pa:S3CR/x?y#z@db/m", "postgresql://u:***@db/m"),
    ("postgresql://u:S3CR x@localhost/db", "postgresql://u:***@localhost/db"),
    ("postgresql://u:S3CR%40x%zz@db", "postgresql://u:***@db"),
    ("postgresql://u x:S3CR@db", "postgresql://u x:***@db"),
    ("postgresql://u:S3CR\n@db", "postgresql://u:***@db"),
    # ... also inside a longer text, quoted or repr'd.
    ("connect to 'postgresql://u:S3CR@db/m' failed", "connect to 'postgresql://u:***@db/m' failed"),
    ('x = "postgresql://u:S3\'CR@db"', 'x = "postgresql://u:***@db"'),
    ("[' postgres://u:S3CR@db ']", "[' postgres://u:***@db ']"),
    ("a postgresql://u:S3CR@h1 and postgresql://v:S3CR@h2", "a postgresql://u:***@h2"),
    # Key/value conninfo: quoted or not, any spacing, any case, escapes, unterminated.
    ("host=db password=S3CR dbname=m", "host=db password=*** dbname=m"),
    ("host=db password = S3CR dbname=m", "host=db password = *** dbname=m"),
    ("host=db password='S3 CR' dbname=m", "host=db password=*** dbname=m"),
    ("host=db password='S3\\' CR' dbname=m", "host=db password=*** dbname=m"),
    ("host=db password='S3\\\\' dbname=m", "host=db password=***"),
    ("host=db password=S3\\ CR dbname=m", "host=db password=*** dbname=m"),
    ("host=db password='S3CR", "host=db password=***"),
    ("host=db password=''", "host=db password=***"),
    ("host=db PASSWORD=S3CR", "host=db PASSWORD=***"),
    ("host=db Password=S3CR", "host=db Password=***"),
    ("sslpassword=S3CR sslkey=/k", "sslpassword=*** sslkey=/k"),
    ("PGPASSWORD=S3CR psql", "PGPASSWORD=*** psql"),
    ("host=db\tpassword=S3CR\n", "host=db\tpassword=***\n"),
    ("host=db password=S3&CR", "host=db password=***"),
    ('password="S3 CR" x=1', "password=*** x=1"),
    # ... and as Python's repr shows them (backslashes doubled).
    (repr("host=db password='S3\\' CR' x=1"), "\"host=db password=*** x=1\""),
    (repr("host=db password=S3\\ CR x=1"), "'host=db password=*** x=1'"),
    # URI query parameters.
    ("postgresql://u@db/m?password=S3CR&sslmode=require",
     "postgresql://u@db/m?password=***&sslmode=require"),
    ("postgresql://u@db/m?sslmode=require&password=S3CR", "postgresql://u@db/m?sslmode=require&password=***"),
]  # fmt: skip

UNCHANGED = [
    "",
    "postgresql://faucet@db:5432/metrics",
    "postgresql://db:5432/metrics",
    "postgresql:///metrics?host=/run/postgresql",
    "host=db port=5432 user=faucet dbname=metrics",
    "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused",
    "passwords may contain @ signs",
    "the password is wrong",
    "user@example.org wrote",
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_the_password_is_masked(text, expected):
    assert redact(text) == expected
    assert "S3" not in redact(text) and "CR" not in redact(text)


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_a_password_is_unchanged(text):
    assert redact(text) == text


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redacting_twice_changes_nothing(text, expected):
    assert redact(redact(text)) == expected


# --- every place a connection string can be shown --------------------------------------

SECRET = "S3CR-pw-0913"
SHOWN = [
    f"POSTGRESQL://u:{SECRET}@localhost/db",
    f"postgres://u:p@{SECRET}@localhost/db",
    f"postgresql://u:pa/{SECRET}@localhost/db",
    f"postgresql://u:12/{SECRET}@localhost/db",
    f"host=localhost password='{SECRET} x' bogus",
]


def config_problems(path=None, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, overrides or {})
    return info.value.problems


@pytest.mark.parametrize("conn_string", SHOWN)
def test_config_problem_lines_mask_the_value(conn_string, tmp_path):
    toml = tmp_path / "faucet.toml"
    toml.write_text(f"[telemetry]\npostgres_string = [{conn_string!r}]\n")
    lines = [*config_problems(toml, {"telemetry.queue_size": conn_string}),  # type errors
             *config_problems(None, {"telemetry.sslmode": conn_string})]  # failed checks
    assert [line.split(" = ")[0] for line in lines] == [
        "telemetry.postgres_string", "telemetry.queue_size", "telemetry.sslmode"]
    assert all("***" in line for line in lines)
    assert SECRET not in "".join(lines)


@pytest.mark.parametrize("conn_string", SHOWN)
def test_connection_string_problems_never_show_the_password(conn_string):
    try:
        settings = connection_settings(conn_string, None, None)
    except ConfigError as exc:
        assert str(exc).startswith("telemetry.postgres_string: ")
        assert SECRET not in str(exc)
    else:  # libpq reads no password here: what it shows of the string must not show it
        assert SECRET not in settings.describe()


@pytest.mark.parametrize("conn_string", SHOWN)
def test_telemetry_init_prints_no_password(conn_string, capsys):
    with pytest.raises(SystemExit) as info:
        main(["telemetry", "init", "--telemetry-postgres-string", conn_string])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("faucet: telemetry")
    assert SECRET not in err


@pytest.mark.parametrize(("conn_string", "shown"), [
    ("postgresql://u:p%40s%2Fs@db:5432,db2:5433/m?sslmode=disable", "u@db,db2:5432,5433/m"),
    ("postgresql://u@[::1]/m", "u@::1/m"),
    ("postgresql:///m?host=/run/postgresql", "/run/postgresql/m"),
    ("postgres://u:pw@db/m%40x", "u@db/m@x"),
])  # fmt: skip
def test_uris_libpq_reads_as_written_are_accepted(conn_string, shown):
    assert connection_settings(conn_string, None, None).describe() == shown
