"""App detection, worker commands and the restart policy (pure)."""

import random
from pathlib import Path

import attrs
import pytest

from faucet.config.app_kinds import KINDS
from faucet.config.settings import ENV_ALIASES, Config, TelemetryConfig, env_name, setting_keys
from faucet.errors import ConfigError
from faucet.workers.command import (
    AppSpec,
    detect_kind,
    resolve_kind,
    withheld_variables,
    worker_argv,
    worker_env,
)
from faucet.workers.supervisor import RestartPolicy, describe_exit


@pytest.mark.parametrize(("files", "kind"), [
    (["plumber.R"], "plumber"),
    (["entrypoint.R", "other.R"], "plumber"),
    (["app.R"], "shiny"),
    (["ui.R", "server.R"], "shiny"),
    (["ui.R"], None),
    ([], None),
])
def test_detect_kind(tmp_path: Path, files, kind):
    for name in files:
        (tmp_path / name).write_text("")
    assert detect_kind(tmp_path) == kind


def test_resolve_kind_errors_name_the_key_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"dir = .*no such directory"):
        resolve_kind("auto", tmp_path / "missing", None)
    with pytest.raises(ConfigError) as caught:
        resolve_kind("auto", tmp_path, None)
    assert caught.value.problems == [
        f"type = 'auto': cannot detect the app type in {str(tmp_path)!r} (no plumber.R, "
        "entrypoint.R, app.R or ui.R + server.R); set --type plumber|shiny|quarto-shiny|fast-api"
    ]
    assert resolve_kind("shiny", tmp_path, None) == "shiny"


def test_worker_commands():
    plumber = worker_argv(AppSpec("plumber", Path("."), rscript="/opt/R"), 4001)
    assert plumber[:2] == ["/opt/R", "-e"]
    assert 'options("plumber.port"=4001)' in plumber[2] and "plumber::plumb()" in plumber[2]
    shiny = worker_argv(AppSpec("shiny", Path("."), app_dir='my "app"'), 4002)
    assert 'options("shiny.port"=4002)' in shiny[2]
    assert 'shiny::runApp("my \\"app\\""' in shiny[2]
    # The Rust server's commands, with the host pinned to loopback.
    quarto = worker_argv(AppSpec("quarto-shiny", Path("."), qmd="doc.qmd", quarto="q"), 4003)
    assert quarto == ["q", "serve", "--port", "4003", "--host", "127.0.0.1", "doc.qmd"]
    fast = worker_argv(AppSpec("fast-api", Path("."), uv="/opt/uv"), 4004)
    assert fast == ["/opt/uv", "run", "fastapi", "run", "--workers", "1",
                    "--host", "127.0.0.1", "--port", "4004"]
    assert worker_env({"A": "1"}, 3, frozenset()) == {"A": "1", "FAUCET_WORKER_ID": "3"}


FAUCETS_OWN = {
    "FAUCET_TELEMETRY_POSTGRES_STRING": "postgresql://faucet:s3cret@db/metrics",
    "FAUCET_PG_CON_STRING": "postgresql://faucet:s3cret@db/metrics",  # the Rust name
    "FAUCET_TELEMETRY_POSTGRES_SSLCERT": "/etc/ca.pem",  # the Rust server's, not ours
    "FAUCET_TELEMETRY_SINK": "postgres",
    "FAUCET_CONFIG": "/etc/faucet.toml",
    "FAUCET_WORKERS": "4",
    "FAUCET_LOG": "debug",
    "FAUCET_STARTUP_TIMEOUT": "30",
}
THE_APPS = {"PATH": "/usr/bin", "HOME": "/home/app", "R_LIBS_USER": "/lib/R",
            "FAUCET_MY_APP_FLAG": "1", "PGHOST": "db", "PGUSER": "app"}


@pytest.mark.parametrize("postgres", [True, False])
def test_workers_never_inherit_faucets_settings(postgres):
    telemetry = TelemetryConfig(postgres_string="postgresql://db/m" if postgres else None)
    credentials = {"PGPASSWORD": "s3cret", "PGPASSFILE": "/home/f/.pgpass"}
    base = {**FAUCETS_OWN, **THE_APPS, **credentials, "FAUCET_WORKER_ID": "9"}
    env = worker_env(base, 2, withheld_variables(Config(telemetry=telemetry)))
    # With faucet's telemetry in PostgreSQL, libpq's credentials are faucet's; else the
    # app's own (an R app may connect to its database with PGPASSWORD).
    assert env == {**THE_APPS, **({} if postgres else credentials), "FAUCET_WORKER_ID": "2"}


def test_every_setting_variable_is_withheld():
    withheld = withheld_variables(Config())
    assert {env_name(key) for key in setting_keys()} | set(ENV_ALIASES) <= withheld


def test_every_runtime_is_an_app_spec_setting():
    settings = {field.name for field in attrs.fields(AppSpec)}
    assert {kind.runtime.key for kind in KINDS.values()} <= settings


def test_restart_backoff_grows_is_capped_and_forgiven():
    policy = RestartPolicy(initial=1, cap=8, stable_after=30, rng=random.Random(1))
    delays = [policy.delay(uptime=0.1) for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert policy.delay(uptime=60) <= 1  # stayed up: back to the first step


def test_describe_exit():
    assert describe_exit(1) == "exit status 1"
    assert describe_exit(-9) == "killed by SIGKILL"
