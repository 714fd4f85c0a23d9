"""A request that reaches faucet while its app's workers are still starting waits for
the first one (up to worker_wait_timeout) under every strategy, against stand-in
workers (no R) that start only once every request is waiting."""

import sys

import trio

from faucet.config.routes import RouteConfig
from faucet.config.strategy import Strategy
from faucet.proxy.router import RouteTable
from tests.helpers import ROOT, config_for, run_faucet, until

STANDIN = ROOT / "tests" / "standin" / "Rscript"


async def test_requests_wait_for_workers_still_starting(tmp_path):
    gate = tmp_path / "gate"
    slow_start = tmp_path / "Rscript"
    slow_start.write_text(f'#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.02; done\n'
                          f'exec {sys.executable} {STANDIN} "$@"\n')
    slow_start.chmod(0o755)
    routes = [RouteConfig(route=f"/{strategy}/", server_type="plumber", strategy=strategy,
                          workdir=str(tmp_path),
                          max_rps=10.0 if strategy.scales else None)
              for strategy in Strategy]
    config = config_for(rscript=str(slow_start), route=routes, worker_wait_timeout=30)
    async with run_faucet(config, routes=RouteTable(routes), wait=False) as faucet, \
            faucet.client() as client:
        answers = {}

        async def ask(strategy):
            answers[strategy] = await client.get(f"/{strategy}/x")

        async with trio.open_nursery() as nursery:
            for strategy in Strategy:
                nursery.start_soon(ask, strategy)
            await trio.testing.wait_all_tasks_blocked()  # every request is waiting
            assert not answers
            assert not any(b.online for m in faucet.proxy_mounts for b in m.backends)
            gate.touch()
    assert {s: (r.status_code, r.text) for s, r in answers.items()} == {
        s: (200, "worker 1") for s in Strategy}


async def test_an_app_whose_workers_cannot_start_gets_503_at_once(tmp_path, monkeypatch):
    """A syntax error in the app: every worker exits before it accepts a connection. The
    answer comes at once (not after worker_wait_timeout), says why, and shows the app's
    last error line to a client on this machine only."""
    (tmp_path / "plumber.R").write_text("# stand-in\n")
    (tmp_path / "version.txt").write_text("fail: a syntax error")
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    config = config_for(dir=str(tmp_path), rscript=str(STANDIN), worker_wait_timeout=300,
                        ip_from="x-forwarded-for")
    async with run_faucet(config, wait=False) as faucet, faucet.client() as client:
        await until(lambda: all(b.failed_starts for b in faucet.backends()))
        with trio.fail_after(30):  # a guard against hanging: the wait would be 300 s
            local = await client.get("/", headers={"x-forwarded-for": "127.0.0.1"})
            remote = await client.get("/", headers={"x-forwarded-for": "203.0.113.7"})
    assert local.status_code == remote.status_code == 503
    assert "failing to start" in local.text and "failing to start" in remote.text
    assert "last error: Error: cannot start (version.txt says fail)" in local.text
    assert "last error" not in remote.text
