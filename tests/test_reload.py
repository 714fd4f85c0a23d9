"""Reloads (issue 17 item 1): a new generation of workers for what changed, live once
online, the old one drained; a broken reload changes nothing. Stand-in workers (no R)
whose answers name the app folder's version.txt, the "code" a reload replaces."""

import signal
import subprocess
import sys
import uuid

import httpx
import trio

from faucet.cli import build_parser
from faucet.config.routes import RouteConfig
from faucet.errors import ConfigError
from faucet.lifecycle import deploy
from faucet.lifecycle.deploy import Snapshot
from faucet.lifecycle.plan import plan_router, plan_start
from faucet.proxy.router import RouteTable
from tests.helpers import (
    MARK,
    ROOT,
    config_for,
    keep_asking,
    marked_processes,
    run_faucet,
    served,
    until,
    wait_until,
)

STANDIN = str(ROOT / "tests" / "standin" / "Rscript")


def app_folder(tmp_path, name: str = "app", version: str = "v1"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "plumber.R").write_text("# stand-in\n")
    (folder / "version.txt").write_text(version)
    return folder


def start_app(folder, **overrides):
    """An in-process faucet for ``folder`` and the ``load`` a reload reads it with."""
    config = config_for(dir=str(folder), rscript=STANDIN, **overrides)

    def load() -> Snapshot:
        return Snapshot(config, plan_start(config), None)
    return config, load


async def answers(client: httpx.AsyncClient, count: int = 4) -> set[str]:
    return {(await client.get("/")).text for _ in range(count)}


async def test_changed_code_gets_a_new_generation_and_the_old_one_drains(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    folder = app_folder(tmp_path)
    config, load = start_app(folder)
    async with run_faucet(config) as faucet, faucet.client() as client:
        assert await answers(client) == {"worker 1 v1", "worker 2 v1"}
        old_pids = {b.pid for b in faucet.backends()}
        (folder / "version.txt").write_text("v2")
        assert await faucet.deployer.reload(load)
        assert await answers(client) == {"worker 1 v2", "worker 2 v2"}
        assert {b.generation for b in faucet.backends()} == {1}
        await until(lambda: not faucet.proxy_mounts[0].retired)  # drained and stopped
        assert not old_pids & set(marked_processes(mark))
        health = (await client.get("/__faucet__/health")).json()
        assert health["reload"] == {"reloads": 1, "last_error": None}
        assert [w["generation"] for w in health["workers"]] == [1, 1]


async def test_nothing_changed_keeps_the_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    config, load = start_app(app_folder(tmp_path))
    async with run_faucet(config) as faucet:
        before = [(b.pid, b.generation) for b in faucet.backends()]
        assert await faucet.deployer.reload(load)
        assert [(b.pid, b.generation) for b in faucet.backends()] == before


async def test_a_new_generation_that_cannot_start_leaves_the_old_one_serving(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    folder = app_folder(tmp_path)
    config, load = start_app(folder)
    async with run_faucet(config) as faucet, faucet.client() as client:
        (folder / "version.txt").write_text("fail: a syntax error in the new code")
        assert not await faucet.deployer.reload(load)
        assert await answers(client) == {"worker 1 v1", "worker 2 v1"}
        assert faucet.proxy_mounts[0].retired == []
        health = (await client.get("/__faucet__/health")).json()
        assert "did not start" in health["reload"]["last_error"]
        assert "exit status 1" in health["reload"]["last_error"]


async def test_invalid_settings_change_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    config, _ = start_app(app_folder(tmp_path))

    def broken() -> Snapshot:
        raise ConfigError(["workers = 0 (from faucet.toml): must be at least 1"])

    async with run_faucet(config) as faucet, faucet.client() as client:
        before = [b.pid for b in faucet.backends()]
        assert not await faucet.deployer.reload(broken)
        assert [b.pid for b in faucet.backends()] == before
        assert await answers(client) == {"worker 1 v1", "worker 2 v1"}
    assert "reload refused: workers = 0 (from faucet.toml): must be at least 1" in caplog.text


async def test_requests_under_load_all_succeed_across_a_reload(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    folder = app_folder(tmp_path)
    config, load = start_app(folder)
    statuses: list[int] = []
    async with run_faucet(config) as faucet, faucet.client() as client:
        done = trio.Event()

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(keep_asking, client, "/", statuses, done)
            await until(lambda: len(statuses) > 50)
            (folder / "version.txt").write_text("v2")
            assert await faucet.deployer.reload(load)
            await until(lambda: not faucet.proxy_mounts[0].retired)
            done.set()
    assert len(statuses) > 100 and set(statuses) == {200}


async def test_router_routes_added_removed_and_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    kept, dropped, added = (app_folder(tmp_path, name) for name in ("kept", "dropped", "new"))

    def routes_for(*folders) -> list[RouteConfig]:
        return [RouteConfig(route=f"/{f.name}/", server_type="plumber", workers=1,
                            workdir=str(f)) for f in folders]

    first = routes_for(kept, dropped)
    config = config_for(rscript=STANDIN, route=first)
    second = routes_for(added, kept)

    def load() -> Snapshot:
        return Snapshot(config, plan_router(config, second), RouteTable(second))

    async with run_faucet(config, routes=RouteTable(first)) as faucet, \
            faucet.client() as client:
        kept_pid = faucet.backends(0)[0].pid
        assert (await client.get("/dropped/")).text == "worker 1 v1"
        assert await faucet.deployer.reload(load)
        assert (await client.get("/new/")).text == "worker 1 v1"
        assert (await client.get("/kept/")).text == "worker 1 v1"
        assert (await client.get("/dropped/")).status_code == 404
        routes = [w["route"] for w in (await client.get("/__faucet__/health")).json()["workers"]]
        assert "/new/" in routes and "/kept/" in routes
        kept_mount = faucet.deployer.apps["/kept/"].mount
        assert kept_mount.backends[0].pid == kept_pid  # untouched: the same process


def test_sighup_and_faucet_reload_deploy_new_code_without_a_restart(tmp_path):
    folder = app_folder(tmp_path)
    pid_file = tmp_path / "faucet.pid"
    env = {"STANDIN_VERSION": "version.txt"}
    with served("start", "--dir", str(folder), "--rscript", STANDIN, "--workers", "1",
                "--pid-file", str(pid_file), online=1, env=env) as faucet:
        assert httpx.get(faucet.url).text == "worker 1 v1"
        assert int(pid_file.read_text()) == faucet.proc.pid
        (folder / "version.txt").write_text("v2")
        faucet.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: httpx.get(faucet.url).text == "worker 1 v2", "new code after SIGHUP")
        (folder / "version.txt").write_text("v3")
        reload = subprocess_faucet("reload", "--pid-file", str(pid_file))
        assert reload.returncode == 0 and "asked to reload" in reload.stdout
        wait_until(lambda: httpx.get(faucet.url).text == "worker 1 v3", "new code after reload")
        assert faucet.proc.poll() is None  # SIGHUP no longer ends faucet
        faucet.stop()
    assert not pid_file.exists()


def subprocess_faucet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faucet", *args], capture_output=True,
                          text=True, timeout=60)


def test_faucet_reload_without_a_running_faucet_says_where_it_looked(tmp_path):
    result = subprocess_faucet("reload", "--pid-file", str(tmp_path / "none.pid"))
    assert result.returncode == 2
    assert "pid_file = " in result.stderr and "no running faucet found" in result.stderr


async def test_watch_reloads_once_the_files_stop_changing(tmp_path, monkeypatch):
    """watch (issue 17 item 2): several quick saves make one reload, once the folder has
    been quiet; a change that cannot start is not retried until the files change again."""
    monkeypatch.setenv("STANDIN_VERSION", "version.txt")
    monkeypatch.setattr(deploy, "WATCH_POLL", 0.1)
    monkeypatch.setattr(deploy, "WATCH_QUIET", 0.3)
    folder = app_folder(tmp_path)
    config, load = start_app(folder, watch=True, workers=1)
    async with run_faucet(config, load=load) as faucet, faucet.client() as client:
        for version in ("v2-draft", "v2-draft2", "v2"):  # an editor saving, then saving again
            (folder / "version.txt").write_text(version)
            await trio.sleep(0.1)
        await until(lambda: faucet.deployer.reloads == 1)
        await faucet.wait_online()
        assert (await client.get("/")).text == "worker 1 v2"
        (folder / "version.txt").write_text("fail")  # cannot start: the old one serves on
        await until(lambda: faucet.deployer.status()["last_error"] is not None)
        await trio.sleep(1)  # several looks at the folder: no new reload is asked for
        assert faucet.deployer.reloads == 1 and (await client.get("/")).text == "worker 1 v2"
        (folder / "version.txt").write_text("v3")
        await until(lambda: faucet.deployer.reloads == 2)
        await faucet.wait_online()
        assert (await client.get("/")).text == "worker 1 v3"


def test_watch_alone_on_the_command_line_means_true():
    assert build_parser().parse_args(["start", "--watch"]).watch == "true"
