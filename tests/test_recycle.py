"""Recycling (max_requests with jitter, max_worker_memory) and each process's temporary
directory: the pure limits, then the stand-in under the supervisor (no R)."""

from __future__ import annotations

import os
import random
import signal
import tempfile
from pathlib import Path

import trio

from faucet.pool.recycle import Limits, RecyclePolicy
from tests.helpers import STANDIN, config_for, run_faucet, until
from tests.test_supervisor import supervised


class Top(random.Random):
    def randint(self, a: int, b: int) -> int:
        return b


def test_max_requests_draws_its_jitter_per_process_and_memory_compares_resident_bytes():
    assert not RecyclePolicy().enabled
    assert RecyclePolicy(100, max_requests_jitter=10).limits(Top()) == Limits(110, None)
    drawn = {RecyclePolicy(100, 10).limits(random.Random(seed)).requests for seed in range(50)}
    assert drawn <= set(range(100, 111)) and len(drawn) > 1
    assert RecyclePolicy(max_requests=0, max_requests_jitter=10).limits(Top()).requests == 0
    limits = Limits(requests=3, memory=2**20)
    assert limits.due(2, 2**20) is None  # at the limit is not over it
    assert limits.due(3, None) == "served 3 requests (max_requests 3)"
    assert limits.due(0, 2**20 + 1).startswith("resident memory 1 MiB is over")
    assert Limits(0, None).due(10**9, 10**12) is None


async def test_the_request_that_reaches_max_requests_makes_the_worker_due(tmp_path,
                                                                        monkeypatch):
    told = []
    async with supervised(tmp_path, monkeypatch, max_requests=3,
                          recycled=lambda: told.append(True)) as worker:
        backend = worker.backend
        await worker.wait_until(lambda: backend.online)
        first = backend.pid
        for _ in range(3):
            backend.lease(slow=False)  # as the dispatcher hands requests to it
            assert await worker.get() == "worker 1"
            backend.release(slow=False)
        (line,) = await worker.log.wait_for("^recycling: ")
        assert line == ("recycling: served 3 requests (max_requests 3); its replacement "
                        "starts, and it serves until that one is online")
        assert told == [True] and backend.recycling.startswith("served 3 requests")
        # It serves on: its slot (faucet.lifecycle.slot) replaces it once the successor is online.
        assert backend.online and backend.pid == first and backend.recycles == 1


async def test_memory_over_max_worker_memory_makes_the_worker_due(tmp_path, monkeypatch):
    due = trio.Event()
    async with supervised(tmp_path, monkeypatch, max_worker_memory="1",
                          recycled=due.set) as worker:
        await worker.wait_until(lambda: worker.backend.online)
        await due.wait()
        assert worker.backend.recycling.startswith("resident memory")


async def test_a_worker_killed_by_a_signal_leaves_no_temporary_files(tmp_path, monkeypatch):
    run = tmp_path / "faucet-run"
    run.mkdir()
    monkeypatch.setenv("STANDIN_TEMPDIR", "1")
    async with supervised(tmp_path, monkeypatch, temp_root=run) as worker:
        backend = worker.backend
        (line,) = await worker.log.wait_for("^tempdir ")
        rtmp = Path(line.removeprefix("tempdir "))
        assert rtmp.parent.parent == run and rtmp.parent.name.startswith("worker-1-")
        assert rtmp.name.startswith("Rtmp") and (rtmp / "file1a2b").is_file()
        await worker.wait_until(lambda: backend.online)
        os.kill(backend.pid, signal.SIGKILL)
        await worker.wait_until(lambda: backend.online and backend.incarnation == 2)
        await until(lambda: not rtmp.exists())
        assert len(os.listdir(run)) == 1  # the new process's own
    assert os.listdir(run) == []  # gone with the last process


async def test_through_faucet_every_request_is_answered_and_health_counts_recycles(
        tmp_path, monkeypatch):
    """Two workers replaced after 5 requests, twice over, with requests arriving while
    they are replaced: none fails, health counts the recycles (no restarts), and the
    run's temporary directory goes at shutdown."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where faucet-XXXX goes
    monkeypatch.setenv("STANDIN_TEMPDIR", "1")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "plumber.R").write_text("# stand-in\n")
    config = config_for(dir=str(tmp_path / "app"), rscript=STANDIN, max_requests=5,
                        strategy="least-busy")
    async with run_faucet(config) as faucet, faucet.client() as client:
        (run,) = tmp_path.glob("faucet-*")
        backends = faucet.backends()
        statuses = set()
        for recycled in (2, 4):
            while sum(b.recycles for b in backends) < recycled:
                statuses.add((await client.get("/")).status_code)
        assert statuses == {200}
        await faucet.wait_online()
        health = (await client.get("/__faucet__/health")).json()
        assert sum(w["recycles"] for w in health["workers"]) >= 4
        assert {w["restarts"] for w in health["workers"]} == {0}
        # One directory per running process, once the replaced ones have stopped.
        await until(lambda: len(list(run.iterdir())) == 2)
    assert not run.exists()


async def test_a_replacement_that_cannot_start_leaves_the_worker_serving_and_shows_in_health(
        tmp_path, monkeypatch):
    """The app's files broke after start: the due worker's replacement exits at once and
    is restarted with backoff, while the worker serves on; health says so."""
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    (tmp_path / "plumber.R").write_text("# stand-in\n")
    (tmp_path / "version.txt").write_text("v1")
    config = config_for(workers=1, dir=str(tmp_path), rscript=str(STANDIN), max_requests=2)
    async with run_faucet(config) as faucet, faucet.client() as client:
        (tmp_path / "version.txt").write_text("fail: the new code does not parse")
        for _ in range(2):
            assert (await client.get("/")).text == "worker 1 v1"

        async def replacement() -> dict:
            (worker,) = (await client.get("/__faucet__/health")).json()["workers"]
            return (worker["recycling"] or {}).get("replacement") or {}

        failing = None
        with trio.fail_after(30):  # a guard against hanging, not a measure of speed
            while not (failing := await replacement()).get("failed_starts"):  # noqa: ASYNC110 (over HTTP)
                await trio.sleep(0.05)
        assert "version.txt says fail" in failing["last_output"]
        assert failing["last_failure"] == "exited (exit status 1)"
        assert (await client.get("/")).text == "worker 1 v1"  # the old process serves on
