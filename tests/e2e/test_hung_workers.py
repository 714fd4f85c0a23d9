"""Hung workers with real Plumber workers: found, taken out of service and replaced;
busy ones left alone. And what a real R worker's environment holds."""

import json
import os
import signal
from collections import Counter
from pathlib import Path

import trio
from psycopg.conninfo import make_conninfo
from trio_websocket import open_websocket_url

from faucet.lifecycle.deploy import free_port
from faucet.pool.liveness import STOPPED
from tests.helpers import (
    PLUMBER,
    config_for,
    faucet_process,
    kill_session,
    leftover_processes,
    run_faucet,
    wait_for_line,
)

# Checks every 0.3 s; a probe has 0.5 s; two failures in a row.
QUICK_WATCH = dict(liveness_interval=0.3, liveness_timeout=0.5, unhealthy_after=2)


async def until(faucet, condition) -> None:
    """Until ``condition()`` holds, re-checked whenever a worker goes online or offline;
    the caller owns the deadline."""
    while not condition():
        await faucet.proxy_mounts[0].dispatcher.wait_changed()


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


async def test_a_stopped_worker_is_replaced_and_its_process_group_killed():
    config = config_for(workers=2, response_timeout=10, **QUICK_WATCH)
    async with run_faucet(config) as faucet, faucet.client() as client:
        victim = faucet.backends()[0]
        stopped_pid = victim.pid
        statuses: Counter[int] = Counter()

        async def keep_asking():
            while True:
                statuses[(await client.get("/echo")).status_code] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_asking)
            os.kill(stopped_pid, signal.SIGSTOP)
            with trio.fail_after(30):
                await until(faucet, lambda: not victim.online)
            health = (await client.get("/__faucet__/health")).json()
            with trio.fail_after(30):
                await until(faucet, lambda: victim.online)
            nursery.cancel_scope.cancel()
        (shown,) = [w for w in health["workers"] if w["worker_id"] == 1]
        assert shown["state"] != "online" and not shown["online"]
        assert shown["last_failure"] == f"{STOPPED} (2 checks in a row)"
        assert victim.restarts == 1 and victim.pid != stopped_pid
        assert gone(stopped_pid)  # killed and reaped although it was stopped
        # Requests sent to it while it was stopped got 502 when it was killed (or 504).
        assert statuses[200] > 0 and set(statuses) <= {200, 502, 504}
        answers = [await client.get("/worker") for _ in range(4)]
        assert {r.status_code for r in answers} == {200}
        assert {r.json()["worker"][0] for r in answers} == {"1", "2"}
        health = (await client.get("/__faucet__/health")).json()
        assert [w["state"] for w in health["workers"]] == ["online", "online"]
        assert health["workers"][0]["restarts"] == 1


async def test_response_timeouts_in_a_row_get_a_worker_restarted():
    # No checks: only the proxy's reports count.
    config = config_for(workers=1, response_timeout=0.5, liveness_interval=0,
                        unhealthy_after=2)
    async with run_faucet(config) as faucet, faucet.client() as client:
        victim = faucet.backends()[0]
        first_pid = victim.pid
        # R serves one request at a time: the second waits behind the first.
        for _ in range(2):
            assert (await client.get("/sleep", params={"s": 30})).status_code == 504
        with trio.fail_after(30):
            await until(faucet, lambda: victim.restarts == 1 and victim.online)
        assert victim.last_failure == ("2 requests in a row got no answer within "
                                       "response_timeout")
        assert victim.pid != first_pid and gone(first_pid)
        # (No request to the new worker here: its first answer may take longer than this
        # test's 0.5 s on a busy machine, and would be one more timeout.)
        health = (await client.get("/__faucet__/health")).json()
        assert health["workers"][0]["state"] == "online"
        assert health["workers"][0]["last_failure"] == victim.last_failure


async def test_a_worker_busy_with_one_slow_request_is_not_hung():
    config = config_for(workers=1, **QUICK_WATCH)
    async with run_faucet(config) as faucet, faucet.client() as client:
        worker = faucet.backends()[0]
        # Ten checks fall in the request: none probes a worker with a request in flight.
        response = await client.get("/sleep", params={"s": 3})
        assert response.status_code == 200
        assert (worker.restarts, worker.last_failure) == (0, None)
        assert (await client.get("/echo")).status_code == 200


SLOW_SHINY = """
library(shiny)
ui <- fluidPage(textInput("seconds", "Seconds", "0"), textOutput("slept"))
server <- function(input, output, session) {
  output$slept <- renderText({ Sys.sleep(as.numeric(input$seconds)); input$seconds })
}
shinyApp(ui, server)
"""


async def test_a_shiny_worker_computing_in_a_session_is_not_hung(tmp_path):
    """R busy in a session has no request in flight, so its probes go unanswered: they
    must not count."""
    (tmp_path / "app.R").write_text(SLOW_SHINY)
    config = config_for(dir=str(tmp_path), type="shiny", workers=1, **QUICK_WATCH)
    async with run_faucet(config) as faucet:
        url = faucet.url.replace("http://", "ws://") + "/websocket/"
        async with open_websocket_url(url) as ws:
            await ws.get_message()  # the config message
            await ws.send_message(json.dumps({"method": "init", "data": {
                "seconds": "3", ".clientdata_output_slept_hidden": False}}))
            with trio.fail_after(30):
                while "values" not in (message := json.loads(await ws.get_message())):
                    pass
        assert message["values"] == {"slept": "3"}
        worker = faucet.backends()[0]
        assert (worker.restarts, worker.last_failure) == (0, None)


def test_a_real_worker_inherits_none_of_faucets_secrets(tmp_path, pg_dsn):
    secret = "s3cret-d0-not-leak"
    conf = tmp_path / "faucet.toml"
    conf.write_text("workers = 1\n")
    env = {
        # Trust auth ignores the password; it is there to be withheld.
        "FAUCET_TELEMETRY_POSTGRES_STRING": make_conninfo(pg_dsn, password=secret),
        "FAUCET_PG_SSLMODE": "prefer",
        "FAUCET_CONFIG": str(conf),
        "PGPASSWORD": secret,
        "PGPASSFILE": str(tmp_path / secret),
        "R_APP_SETTING": "for the app",
    }
    proc = faucet_process("start", "--dir", str(PLUMBER), "--host",
                          f"127.0.0.1:{free_port()}", env=env)
    try:
        wait_for_line(proc, "Worker::1 online")
        (pid,) = leftover_processes(proc)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    finally:
        kill_session(proc)
    names = {entry.partition(b"=")[0] for entry in environ}
    assert secret.encode() not in b"\0".join(environ)
    assert not names & {b"FAUCET_TELEMETRY_POSTGRES_STRING", b"FAUCET_PG_SSLMODE",
                        b"FAUCET_CONFIG", b"PGPASSWORD", b"PGPASSFILE"}
    assert {b"FAUCET_WORKER_ID=1", b"R_APP_SETTING=for the app"} <= set(environ)
