"""App detection, worker commands and the restart policy (pure)."""

import random
from pathlib import Path

import attrs
import pytest

from faucet.app_kinds import KINDS
from faucet.errors import ConfigError
from faucet.supervisor import RestartPolicy, describe_exit
from faucet.workers import (
    AppSpec,
    detect_kind,
    resolve_kind,
    worker_argv,
    worker_env,
)


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
    assert worker_env({"A": "1"}, 3) == {"A": "1", "FAUCET_WORKER_ID": "3"}


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
