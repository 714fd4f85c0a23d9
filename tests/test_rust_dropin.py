"""A Rust faucet user's commands, files and environment, run through the real command
line (no R: the stand-in worker answers for plumber)."""

import subprocess

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
    assert "listening on" not in text  # WARN: faucet's own INFO lines are off
