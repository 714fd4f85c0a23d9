"""WebSocket pass-through: a generic echo worker (tests/ws_support.py) and real Shiny."""

import json
import os
import signal
import uuid

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from faucet.config.settings import TelemetryConfig
from faucet.pool.sticky import LB_COOKIE
from tests.helpers import SHINY, config_for, run_faucet
from tests.ws_support import echo_config


def ws_url(faucet, path: str = "/") -> str:
    return faucet.url.replace("http://", "ws://") + path


async def closed_with(ws) -> tuple[int, str]:
    """The close code and reason the client gets once the other side closes."""
    with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
        await ws.get_message()
    return closed.value.reason.code, closed.value.reason.reason


async def close_seen(faucet, path: str) -> str:
    """"CODE REASON" of the close the (single) worker saw for the session at ``path``."""
    async with open_websocket_url(ws_url(faucet)) as ws:
        await ws.send_message(f"close-of {path}")
        return await ws.get_message()


async def test_messages_headers_subprotocol_and_telemetry(tmp_path, sink):
    config = echo_config(tmp_path, workers=1, telemetry=TelemetryConfig(sink="memory"))
    async with run_faucet(config) as faucet:
        async with open_websocket_url(ws_url(faucet, "/room/7?x=1"),
                                      subprotocols=["other", "echo.v1"],
                                      extra_headers=[(b"x-custom", b"end-to-end")]) as ws:
            assert ws.subprotocol == "echo.v1"
            await ws.send_message("héllo")
            assert await ws.get_message() == "héllo"
            await ws.send_message(b"\x00\xffbinary")
            assert await ws.get_message() == b"\x00\xffbinary"
            await ws.send_message("headers")
            seen = json.loads(await ws.get_message())
            headers = dict(seen["headers"])
            assert seen["path"] == "/room/7?x=1"
            assert headers["x-custom"] == "end-to-end"
            assert headers["x-forwarded-for"] == "127.0.0.1"
            assert headers["x-forwarded-proto"] == "http"
            assert headers["x-forwarded-host"] == faucet.url.removeprefix("http://")
            request_uuid = uuid.UUID(headers["faucet-request-uuid"])
            await trio.sleep(0.2)  # a session length telemetry can see
    (event,) = sink.events
    assert event.request_uuid == request_uuid
    assert (event.status, event.method, event.path, event.query_params) == (
        101, "GET", "/room/7", "x=1")
    assert event.target == "Worker::1" and 200 <= event.elapsed < 5000


async def test_close_codes_and_reasons_cross_both_ways(tmp_path):
    async with run_faucet(echo_config(tmp_path, workers=1)) as faucet:
        async with open_websocket_url(ws_url(faucet, "/a")) as ws:
            await ws.send_message("close 4001 worker says bye")
            assert await closed_with(ws) == (4001, "worker says bye")
        async with open_websocket_url(ws_url(faucet, "/b")) as ws:
            await ws.aclose(4002, "client says bye")
        assert await close_seen(faucet, "/b") == "4002 client says bye"


async def test_max_message_size_closes_with_1009_both_ways(tmp_path):
    async with run_faucet(echo_config(tmp_path, workers=1, max_message_size=1000)) as faucet:
        async with open_websocket_url(ws_url(faucet, "/down")) as ws:
            await ws.send_message("big 1000")
            assert len(await ws.get_message()) == 1000
            await ws.send_message("big 1001")
            assert (await closed_with(ws))[0] == 1009
        assert (await close_seen(faucet, "/down")).startswith("1009 ")
        async with open_websocket_url(ws_url(faucet, "/up")) as ws:
            await ws.send_message("y" * 1001)
            assert (await closed_with(ws))[0] == 1009
        assert (await close_seen(faucet, "/up")).startswith("1009 ")


async def test_killed_worker_closes_the_client_with_1011(tmp_path):
    async with run_faucet(echo_config(tmp_path, workers=1)) as faucet:
        async with open_websocket_url(ws_url(faucet)) as ws:
            await ws.send_message("ping")
            assert await ws.get_message() == "ping"
            os.kill(faucet.backends()[0].pid, signal.SIGKILL)
            assert await closed_with(ws) == (1011, "the worker went away")


async def test_graceful_shutdown_closes_open_sessions_with_1001_at_once(tmp_path):
    config = echo_config(tmp_path, workers=1, shutdown_timeout=60)
    async with run_faucet(config) as faucet:
        async with open_websocket_url(ws_url(faucet)) as ws:
            await ws.send_message("ping")
            assert await ws.get_message() == "ping"
            faucet.shutdown.request()
            with trio.fail_after(5):  # not the 60 s shutdown_timeout
                assert await closed_with(ws) == (1001, "faucet is shutting down")


async def test_bad_forwarded_header_refuses_the_handshake_with_400(tmp_path):
    async with run_faucet(echo_config(tmp_path, workers=1, ip_from="x-forwarded-for")) as faucet:
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(ws_url(faucet),
                                          extra_headers=[(b"x-forwarded-for", b"nonsense")]):
                pass
        assert rejected.value.status_code == 400
        assert b"'nonsense' is not an IP address" in rejected.value.body


def shiny_init(name: str) -> str:
    """The smallest ``init`` Shiny 1.7.4 answers with values: its inputs, and each output
    marked visible (Shiny suspends an output whose ``_hidden`` client data is unknown)."""
    return json.dumps({"method": "init", "data": {
        "name": name, ".clientdata_output_greeting_hidden": False,
        ".clientdata_output_worker_hidden": False}})


async def shiny_values(ws) -> dict:
    """The next ``values`` Shiny sends (skipping busy/recalculating/progress)."""
    with trio.fail_after(10):
        while "values" not in (message := json.loads(await ws.get_message())):
            pass
    return message["values"]


async def test_shiny_session_through_faucet():
    async with run_faucet(config_for(dir=str(SHINY), type="shiny", workers=2)) as faucet:
        async with faucet.client() as client:
            page = await client.get("/")
        assert page.status_code == 200 and "shiny" in page.text.lower()
        cookie = [(b"cookie", f"{LB_COOKIE}={page.cookies[LB_COOKIE]}".encode())]
        workers = set()
        for _ in range(2):
            async with open_websocket_url(ws_url(faucet, "/websocket/"),
                                          extra_headers=cookie) as ws:
                config = json.loads(await ws.get_message())["config"]
                assert len(config["sessionId"]) == 32
                await ws.send_message(shiny_init("Ann"))
                values = await shiny_values(ws)
                assert values["greeting"] == "Hello, Ann!"
                workers.add(values["worker"])
                await ws.send_message(json.dumps({"method": "update", "data": {"name": "Bob"}}))
                assert (await shiny_values(ws)) == {"greeting": "Hello, Bob!"}
        assert len(workers) == 1  # the cookie keeps the client's sessions on one worker
