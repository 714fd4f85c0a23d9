"""Installed from a wheel into a fresh venv (not editable, no checkout beside it), faucet
carries its SQL scripts and ``faucet telemetry init`` works."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from tests.helpers import ROOT
from tests.pg import query


def build_wheel(tmp_path):
    """``pip wheel`` of a copy of the source (the build writes next to its input)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "faucet", src / "faucet", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "sql", src / "sql")
    shutil.copytree(ROOT / "docs", src / "docs")
    for name in ("pyproject.toml", "README.md", "faucet.example.toml"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(src)], check=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    return wheel


def install(wheel, venv):
    """The wheel alone into ``venv``; its dependencies are this interpreter's (a .pth line,
    which adds the directory but runs none of its .pth files, so no editable faucet)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
def test_wheel_carries_sql_example_docs_and_telemetry_init_works(tmp_path, pg_empty_dsn):
    wheel = build_wheel(tmp_path)
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".sql")}
    assert shipped == {f"faucet/sql/{path.name}" for path in (ROOT / "sql").glob("*.sql")}
    venv = tmp_path / "venv"
    install(wheel, venv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(program, *args):
        return subprocess.run([str(venv / "bin" / program), *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=60)

    assert run("python", "-c", "import faucet; print(faucet.__file__)").stdout.startswith(
        str(venv))
    assert run("faucet", "telemetry", "init", "--help").returncode == 0
    # What the README points to is in the wheel: every key, and the docs/ pages.
    assert run("faucet", "config", "example").stdout == (ROOT / "faucet.example.toml").read_text()
    assert run("faucet", "docs", "router").stdout == (ROOT / "docs" / "router.md").read_text()
    result = run("faucet", "telemetry", "init", "--telemetry-postgres-string", pg_empty_dsn)
    assert result.returncode == 0, result.stderr
    assert query(pg_empty_dsn, "SELECT count(*) FROM faucet_http_events") == [(0,)]
