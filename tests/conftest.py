"""Shared fixtures: PostgreSQL (tests/pg.py) and uv with the FastAPI example's venv."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytest_plugins = ["tests.pg"]
FASTAPI = ROOT / "examples" / "fastapi"


@pytest.fixture(scope="session")
def uv_bin() -> str:
    """The ``uv`` executable installed in this venv (pip install uv)."""
    from uv import find_uv_bin

    return find_uv_bin()


@pytest.fixture(scope="session")
def fastapi_env(uv_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for faucets that run examples/fastapi: ``FAUCET_UV``, and the example's
    venv in a temporary folder (not the checkout), synced once with ``faucet uv sync``.

    Syncing first keeps uv's one-off package fetch (~3 s with a cold cache) out of the
    workers' start-up deadline; uv itself locks the venv, so workers that ``uv run`` at
    once in one folder do not race.
    """
    env = {
        "FAUCET_UV": uv_bin,
        "UV_PROJECT_ENVIRONMENT": str(tmp_path_factory.mktemp("uv") / "venv"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "faucet", "uv", "sync", "--locked", "--project", str(FASTAPI)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return env
