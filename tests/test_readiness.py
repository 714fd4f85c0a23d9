"""Readiness apart from liveness (issue 17 item 5): /__faucet__/ready says whether faucet
should get traffic; on a shutdown with shutdown_delay it fails at once while requests are
still served, each with Connection: close, and the listener closes after the delay."""

import sys

import httpx
import trio

from tests.helpers import ROOT, config_for, run_faucet, until

STANDIN = str(ROOT / "tests" / "standin" / "Rscript")


async def test_ready_until_a_shutdown_begins_then_served_for_the_delay(tmp_path):
    config = config_for(workers=1, rscript=STANDIN, shutdown_delay=1.0)
    async with run_faucet(config) as faucet, faucet.client() as client:
        ready = await client.get("/__faucet__/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
        faucet.shutdown.request()
        not_ready = await client.get("/__faucet__/ready")
        assert not_ready.status_code == 503 and not_ready.json()["why"] == "shutting down"
        served = await client.get("/")  # still served during the delay, not kept alive
        assert served.status_code == 200 and served.headers["connection"] == "close"
        assert (await client.get("/__faucet__/health")).status_code == 200  # alive
        await until(lambda: faucet.shutdown.stopping.is_set())
        with trio.fail_after(10):
            while True:  # the listener closes once the delay is over
                try:
                    await client.get("/")
                except httpx.TransportError:
                    break
                await trio.sleep(0.05)


async def test_not_ready_while_an_app_has_no_worker_online(tmp_path):
    gate = tmp_path / "gate"
    held = tmp_path / "Rscript"  # a worker that starts only once the gate exists
    held.write_text(f'#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.02; done\n'
                    f'exec {sys.executable} {STANDIN} "$@"\n')
    held.chmod(0o755)
    config = config_for(workers=1, rscript=str(held))
    async with run_faucet(config, wait=False) as faucet, faucet.client() as client:
        answer = await client.get("/__faucet__/ready")
        assert answer.status_code == 503 and answer.json()["why"] == "no worker online for app"
        gate.touch()
        await faucet.wait_online()
        assert (await client.get("/__faucet__/ready")).status_code == 200
