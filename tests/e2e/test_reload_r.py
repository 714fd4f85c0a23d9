"""Reloads with real R workers (issue 17 item 1; tests/test_reload.py has the stand-in
cases): new code under load with no failed request, a broken plumber.R that changes
nothing, and router routes added, removed and left untouched."""

import shutil

import trio

from faucet.config.routes import RouteConfig
from faucet.lifecycle.deploy import Snapshot
from faucet.lifecycle.plan import plan_router, plan_start
from faucet.proxy.router import RouteTable
from tests.helpers import PLUMBER, alive, config_for, keep_asking, run_faucet, until

CLIENTS = 4
GUARD = 120  # seconds: a guard against hanging, not a measure of speed
VERSION = '\n#* @get /version\nfunction() "{}"\n'


def plumber_copy(tmp_path, name: str = "api"):
    folder = tmp_path / name
    shutil.copytree(PLUMBER, folder)
    return folder


def start(folder, **overrides):
    """An in-process faucet for ``folder`` and the ``load`` a reload reads it with."""
    config = config_for(dir=str(folder), **overrides)

    def load() -> Snapshot:
        return Snapshot(config, plan_start(config), None)
    return config, load


async def test_new_code_under_load_fails_no_request_and_the_old_processes_go(tmp_path):
    folder = plumber_copy(tmp_path)
    config, load = start(folder, workers=2)
    statuses: list[int] = []
    async with run_faucet(config) as faucet, faucet.client() as client:
        old_pids = {b.pid for b in faucet.backends()}
        assert (await client.get("/version")).status_code == 404
        done = trio.Event()

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                for _ in range(CLIENTS):
                    nursery.start_soon(keep_asking, client, "/echo?msg=hi", statuses, done)
                await until(lambda: len(statuses) > 20)
                with (folder / "plumber.R").open("a") as code:
                    code.write(VERSION.format("v2"))
                assert await faucet.deployer.reload(load)
                assert (await client.get("/version")).json() == ["v2"]
                await until(lambda: not faucet.proxy_mounts[0].retired)
                done.set()
            await until(lambda: not any(alive(pid) for pid in old_pids))
    assert len(statuses) > 40 and set(statuses) == {200}


async def test_a_plumber_file_that_does_not_parse_changes_nothing(tmp_path):
    folder = plumber_copy(tmp_path)
    config, load = start(folder, workers=1)
    async with run_faucet(config) as faucet, faucet.client() as client:
        before = [b.pid for b in faucet.backends()]
        with (folder / "plumber.R").open("a") as code:
            code.write("\nfunction( {\n")
        with trio.fail_after(GUARD):
            assert not await faucet.deployer.reload(load)
        assert [b.pid for b in faucet.backends()] == before
        assert (await client.get("/echo?msg=still")).json() == {"msg": ["still"]}
        health = (await client.get("/__faucet__/health")).json()
        assert "did not start" in health["reload"]["last_error"]


async def test_router_routes_added_removed_and_untouched(tmp_path):
    kept, dropped, added = (plumber_copy(tmp_path, name) for name in ("kept", "dropped", "new"))

    def routes_for(*folders) -> list[RouteConfig]:
        return [RouteConfig(route=f"/{f.name}/", server_type="plumber", workers=1,
                            workdir=str(f)) for f in folders]

    first, second = routes_for(kept, dropped), routes_for(added, kept)
    config = config_for(route=first)

    def load() -> Snapshot:
        return Snapshot(config, plan_router(config, second), RouteTable(second))

    async with run_faucet(config, routes=RouteTable(first)) as faucet, \
            faucet.client() as client:
        kept_pid = faucet.deployer.apps["/kept/"].mount.backends[0].pid
        dropped_pid = faucet.deployer.apps["/dropped/"].mount.backends[0].pid
        assert (await client.get("/dropped/echo?msg=a")).status_code == 200
        with trio.fail_after(GUARD):
            assert await faucet.deployer.reload(load)
            assert (await client.get("/new/echo?msg=b")).json() == {"msg": ["b"]}
            assert (await client.get("/kept/echo?msg=c")).json() == {"msg": ["c"]}
            assert (await client.get("/dropped/echo?msg=d")).status_code == 404
            assert faucet.deployer.apps["/kept/"].mount.backends[0].pid == kept_pid
            await until(lambda: not alive(dropped_pid))
