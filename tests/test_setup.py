"""``.ci/setup`` installs only what is missing, judged by the commands (and R packages)
it needs, not by Debian package names: an nginx from any package counts."""

import os
import subprocess

import pytest

from tests.helpers import ROOT

COMMANDS = ["python3", "Rscript", "chromium", "wrk", "nginx", "haproxy", "pg_ctlcluster", "psql",
            "ps", "pkill", "prometheus"]


def missing(tmp_path, present: list[str]) -> list[str]:
    """What ``.ci/setup test`` would install with only ``present`` on PATH (stand-ins that
    succeed), as it reports with SETUP_PRINT_MISSING instead of installing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in present:
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True,
                                                   text=True).stdout.strip())
    result = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "setup"), "test"],
                            env={"PATH": str(bin_dir), "SETUP_PRINT_MISSING": "1",
                                 "HOME": os.environ.get("HOME", "/")},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_nothing_is_installed_when_every_command_is_there(tmp_path):
    """nginx-light used to be installed although an nginx was there."""
    assert missing(tmp_path, COMMANDS) == []


@pytest.mark.parametrize(("absent", "package"), [
    ("nginx", "nginx-light"), ("haproxy", "haproxy"), ("wrk", "wrk"), ("psql", "postgresql"),
    ("Rscript", "r-base-core")])
def test_a_missing_command_installs_its_package(tmp_path, absent, package):
    assert package in missing(tmp_path, [name for name in COMMANDS if name != absent])
