"""Shared fixtures: PostgreSQL (tests/pg.py), uv with the FastAPI example's venv, and an
in-memory telemetry sink registered as ``memory``; and the quick/slow split.

The split is by folder: tests/e2e/ holds the end-to-end tests (real R workers, worker
processes, a browser, Prometheus, HAProxy), each marked ``slow`` here; everything else
under tests/ runs in-process and is quick. ``-m "not slow"`` runs the quick ones.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from faucet.events import HttpEvent
from faucet.sinks import SinkUnavailable
from tests.helpers import FASTAPI, registered_sink

pytest_plugins = ["tests.pg"]
E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e/ slow; a slow mark anywhere else is an error (the
    folder is the one place that says which tests are end to end)."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.slow)
        elif item.get_closest_marker("slow") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked slow outside tests/e2e/: "
                                    "move it there")


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


class MemorySink:
    """Keeps batches in memory; ``down`` makes it report itself unavailable."""

    def __init__(self) -> None:
        self.batches: list[list[HttpEvent]] = []
        self.attempts = 0
        self.down = False
        self.reject = False
        self.closed = False

    async def write_batch(self, events) -> None:
        await trio.sleep(0.001)  # a write takes a moment (no real time on autojump_clock)
        self.attempts += 1
        if self.down:
            raise SinkUnavailable("down for the test")
        if self.reject:
            raise ValueError("bad batch")
        self.batches.append(list(events))

    async def aclose(self) -> None:
        self.closed = True

    @property
    def events(self) -> list[HttpEvent]:
        return [event for batch in self.batches for event in batch]


@pytest.fixture
def sink():
    sink = MemorySink()
    with registered_sink("memory", lambda options, config: sink):
        yield sink
