"""A Rust faucet user's commands, files and environment, run through the real command
line (no R: the stand-in worker answers for plumber)."""

import argparse
import importlib.metadata
import subprocess

import pytest

from faucet.cli import build_parser, parse
from faucet.config.flags import DESCRIPTIONS, help_line
from faucet.config.settings import env_name, setting_keys
from tests.helpers import PLUMBER, ROOT, faucet_process, kill_session, wait_for_line

STANDIN = str(ROOT / "tests" / "standin" / "Rscript")


def run(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    proc = faucet_process(*args, env=env, cwd=cwd)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_dot_env_in_the_working_directory_configures_faucet(tmp_path):
    (tmp_path / ".env").write_text("FAUCET_WORKERS=0\nFAUCET_STRATEGY=fastest\n")
    from_file = run("start", "--dir", str(PLUMBER), cwd=tmp_path)
    real_env = run("start", "--dir", str(PLUMBER), cwd=tmp_path, env={"FAUCET_WORKERS": "-3"})
    assert from_file.returncode == real_env.returncode == 2
    assert "workers = 0 (from FAUCET_WORKERS)" in from_file.stderr
    assert "workers = -3 (from FAUCET_WORKERS)" in real_env.stderr  # the real one wins
    assert "strategy = 'fastest' (from FAUCET_STRATEGY)" in real_env.stderr


def test_children_inherit_dot_env_and_renviron(tmp_path):
    (tmp_path / ".env").write_text("APP_SECRET='from .env'\nSHARED=env\n")
    (tmp_path / ".Renviron").write_text("SHARED=renviron\n")
    result = run("--rscript", "env", "rscript", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "APP_SECRET=from .env" in lines and "SHARED=renviron" in lines


def test_ignored_variables_and_bad_env_lines_are_logged_at_start_up(tmp_path):
    (tmp_path / ".env").write_text("GOOD=1\nBAD LINE\n")
    proc = faucet_process("start", "--dir", str(PLUMBER), "--rscript", STANDIN,
                          "--workers", "1", "--host", "127.0.0.1:0", cwd=tmp_path,
                          env={"FAUCET_WOKERS": "2", "FAUCET_LOG": "WARN,faucet.worker=info"})
    try:
        text = wait_for_line(proc, "Worker::1 online")
    finally:
        kill_session(proc)
    assert f"{tmp_path / '.env'}:2: expected BAD=value; line skipped" in text
    assert ("FAUCET_WOKERS is not a faucet setting and is ignored; did you mean "
            "FAUCET_WORKERS?") in text
    assert "faucet listening on" not in text  # WARN: faucet's own INFO lines are off


def test_the_rust_short_flags():
    args, c = parse(["-q", "/opt/quarto", "-i", "x-real-ip", "-r", "/R", "-u", "/uv",
                     "-l", "f.log", "-m", "10M", "start", "-w", "3", "-s", "ip-hash",
                     "-t", "shiny", "-d", "/srv/app", "-a", "app", "-q", "doc.qmd"], {})
    c = c.config
    assert (c.quarto, c.ip_from, c.rscript, c.uv, c.log_file, c.max_log_file_size) == (
        "/opt/quarto", "x-real-ip", "/R", "/uv", "f.log", 10_000_000)
    assert (c.workers, c.strategy, c.type, c.dir, c.app_dir, c.qmd) == (
        3, "ip-hash", "shiny", "/srv/app", "app", "doc.qmd")  # after start, -q is --qmd
    c = parse(["router", "-c", "routes.toml", "-q", "/q"], {})[1].config
    assert (c.conf, c.quarto) == ("routes.toml", "/q")
    args, loaded = parse(["-r", "/usr/bin/env", "rscript", "-e", "1"], {})
    c = loaded.config
    assert (args.command, args.args, c.rscript) == ("rscript", ["-e", "1"], "/usr/bin/env")


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag):
    result = run(flag)
    assert result.returncode == 0
    assert result.stdout == f"faucet {importlib.metadata.version('faucet-r')}\n"


def command_help(*names: str) -> str:
    """``faucet NAMES... --help`` in-process."""
    parser = build_parser()
    for name in names:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[name]
    return parser.format_help()


@pytest.mark.parametrize("key", setting_keys())
def test_help_shows_each_flag_with_its_env_variable_and_default(key):
    """`faucet config show --help` takes every setting; start and router their own."""
    assert key in DESCRIPTIONS
    text = " ".join(command_help("config", "show").split())
    line = help_line(key)
    assert f"[env: {env_name(key)}" in line and "[default: " in line
    assert " ".join(line.replace("%%", "%").split()) in text


def test_help_as_printed():
    text = " ".join(run("start", "--help").stdout.split())
    assert "-q QMD, --qmd QMD Quarto document (quarto-shiny) [env: FAUCET_QMD] [default: none]" \
        in text
    assert ("--log-level LOG_LEVEL a level (error, warn, info, debug, trace, off) or directives "
            "like warn,faucet.access=info [env: FAUCET_LOG_LEVEL, FAUCET_LOG] [default: info]"
            ) in text
    assert "--telemetry-sslmode SSLMODE, --pg-sslmode SSLMODE" in text
