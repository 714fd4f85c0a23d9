"""Shiny sessions that survive reconnects, end to end without R: a stand-in Shiny worker
(tests/shiny_standin.py), a Python client that speaks the reconnect script's protocol
(tests/shiny_client.py) and, between them, a Forwarder the tests cut and freeze."""

import contextlib
import json
import os
import signal
import uuid

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from faucet.config.routes import RouteConfig
from faucet.config.settings import TelemetryConfig
from faucet.events import HttpEvent, LogEvent
from faucet.proxy.router import RouteTable
from tests.forwarder import Forwarder
from tests.helpers import run_faucet, until
from tests.shiny_client import ResumingClient, SessionGone
from tests.shiny_standin import standin_config


async def health(faucet) -> dict:
    async with faucet.client() as client:
        return (await client.get("/__faucet__/health")).json()


async def until_health(faucet, predicate, deadline: float = 10) -> dict:
    """Poll the health endpoint until ``predicate(body)`` holds (within ``deadline``)."""
    with trio.fail_after(deadline):
        while not predicate(body := await health(faucet)):  # noqa: ASYNC110 (over HTTP)
            await trio.sleep(0.05)
    return body


@contextlib.asynccontextmanager
async def network(faucet, page: str = "/"):
    """A Forwarder before faucet, and the WebSocket URL Shiny's page at ``page`` would use
    through it."""
    port = int(faucet.url.rsplit(":", 1)[1])
    forwarder = Forwarder("127.0.0.1", port)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(forwarder.serve)
        yield forwarder, f"ws://127.0.0.1:{listening}{page}websocket/"
        nursery.cancel_scope.cancel()


def direct_url(faucet) -> str:
    return faucet.url.replace("http://", "ws://") + "/websocket/"


async def token_of(client: ResumingClient) -> str:
    """Shiny's session token, from the first message of a new session."""
    return json.loads(await client.receive())["config"]["sessionId"]


@contextlib.asynccontextmanager
async def one_session(tmp_path):
    """faucet with one stand-in worker and one resuming client whose session is open:
    (faucet, client, the nursery its connection lives in)."""
    async with (run_faucet(standin_config(tmp_path, workers=1)) as faucet,
                trio.open_nursery() as legs):
        client = ResumingClient(direct_url(faucet))
        await client.connect(legs)
        await token_of(client)
        yield faucet, client, legs


@contextlib.asynccontextmanager
async def session_behind_forwarder(config):
    """faucet running ``config`` and one resuming client whose session is open, reaching
    faucet through a forwarder the test can cut: (faucet, forwarder, client, the nursery
    its connection lives in, the session's token)."""
    async with (run_faucet(config) as faucet, network(faucet) as (forwarder, url),
                trio.open_nursery() as legs):
        client = ResumingClient(url)
        await client.connect(legs)
        yield faucet, forwarder, client, legs, await token_of(client)


async def told_to_reload_once_back(forwarder, client: ResumingClient, legs) -> None:
    """The network returns: the client's reconnect is refused with 4001, so its page
    reloads into a fresh session."""
    forwarder.restore()
    with pytest.raises(SessionGone) as gone:
        await client.connect(legs)
    assert gone.value.code == 4001
    legs.cancel_scope.cancel()


async def command(faucet, text: str) -> str:
    """Send one command on a separate session of the (single) worker; its answer."""
    async with open_websocket_url(direct_url(faucet)) as ws:
        await ws.get_message()  # the config message
        await ws.send_message(text)
        return await ws.get_message()


async def dropped(client: ResumingClient) -> None:
    """Until the client's connection is seen to be gone."""
    with contextlib.suppress(Exception):
        while True:
            await client.receive()


async def test_a_dropped_connection_resumes_without_losing_or_repeating_a_message(tmp_path):
    config = standin_config(tmp_path, workers=1)
    async with session_behind_forwarder(config) as (faucet, forwarder, client, legs, token):
        for i in (1, 2, 3):
            await client.send(f"m{i}")
        forwarder.cut()
        await dropped(client)
        # The worker goes on while the client is away: faucet buffers what it sends.
        assert await command(faucet, f"emit {token} 5") == "emitted"
        forwarder.restore()
        await client.connect(legs)
        await client.send("m4")
        await client.send("log")
        assert [await client.receive() for _ in range(5)] == [f"n:{i}" for i in range(1, 6)]
        # The worker's session never noticed: one session, every message exactly once.
        assert json.loads(await client.receive()) == ["m1", "m2", "m3", "m4"]
        assert (await health(faucet))["sessions"]["live"] == 1
        legs.cancel_scope.cancel()


async def test_a_client_back_after_reconnect_grace_is_told_to_reload(tmp_path):
    config = standin_config(tmp_path, workers=1, reconnect_grace=0.5)
    async with session_behind_forwarder(config) as (faucet, forwarder, client, legs, _):
        forwarder.cut()
        await until_health(faucet, lambda body: body["sessions"]["live"] == 0)
        await told_to_reload_once_back(forwarder, client, legs)


async def test_the_buffer_bound_ends_a_session_whose_client_is_away(tmp_path):
    config = standin_config(tmp_path, workers=1, reconnect_buffer="64")
    async with session_behind_forwarder(config) as (faucet, forwarder, client, legs, token):
        forwarder.cut()
        await until_health(faucet, lambda body: body["sessions"]["waiting"] == 1)
        assert await command(faucet, f"emit {token} 40") == "emitted"  # > 64 bytes
        await until_health(faucet, lambda body: body["sessions"]["live"] == 0)
        assert (await health(faucet))["sessions"]["buffered"] == 0
        await told_to_reload_once_back(forwarder, client, legs)


async def test_a_half_open_client_is_found_by_the_heartbeat_and_can_resume(tmp_path):
    config = standin_config(tmp_path, workers=1, heartbeat_interval=0.2, heartbeat_timeout=1)
    async with session_behind_forwarder(config) as (faucet, forwarder, client, legs, token):
        sessions = (await health(faucet))["sessions"]
        assert (sessions["live"], sessions["waiting"]) == (1, 0)
        forwarder.freeze()  # packets dropped: no FIN, no RST, the pings go unanswered
        # Found within heartbeat_timeout; the deadline only keeps a broken test from hanging.
        await until_health(faucet, lambda body: body["sessions"]["waiting"] == 1, deadline=5)
        assert await command(faucet, f"emit {token} 2") == "emitted"
        forwarder.cut()
        forwarder.thaw()
        forwarder.restore()
        await client.connect(legs)
        assert [await client.receive() for _ in range(2)] == ["n:1", "n:2"]
        legs.cancel_scope.cancel()


async def test_a_worker_that_dies_tells_its_clients_to_reload(tmp_path):
    async with one_session(tmp_path) as (faucet, client, legs):
        os.kill(faucet.backends()[0].pid, signal.SIGKILL)
        assert await client.close_code() == 4002
        legs.cancel_scope.cancel()


async def test_graceful_shutdown_tells_clients_faucet_is_restarting(tmp_path):
    async with one_session(tmp_path) as (faucet, client, legs):
        faucet.shutdown.request()
        assert await client.close_code() == 1012
        legs.cancel_scope.cancel()


async def test_the_worker_gets_faucets_session_id_never_the_clients(tmp_path):
    async with one_session(tmp_path) as (faucet, client, legs):
        await client.send("headers")
        seen = uuid.UUID(json.loads(await client.receive())["faucet_session_id"])
        assert seen != client.session_id  # derived by faucet: no client chooses it
        zeros = ResumingClient(direct_url(faucet))
        zeros.session_id = uuid.UUID(int=0)  # a client's choice R used to get as it was
        await zeros.connect(legs)
        await token_of(zeros)
        await zeros.send("headers")
        chosen = uuid.UUID(json.loads(await zeros.receive())["faucet_session_id"])
        assert chosen not in (zeros.session_id, seen)
        forged = [(b"FAUCET_SESSION_ID", b"forged"), (b"faucet-session-id", b"forged")]
        async with open_websocket_url(direct_url(faucet), extra_headers=forged) as plain:
            await plain.get_message()
            await plain.send_message("headers")
            headers = json.loads(await plain.get_message())
        assert "faucet-session-id" not in headers
        assert uuid.UUID(headers["faucet_session_id"]) != client.session_id
        legs.cancel_scope.cancel()


async def test_sessions_spread_evenly_and_a_full_pool_gets_the_503_page(tmp_path):
    config = standin_config(tmp_path, workers=2, max_sessions=2)
    async with run_faucet(config) as faucet, trio.open_nursery() as legs:
        clients = [ResumingClient(direct_url(faucet)) for _ in range(4)]

        async def open_session(client: ResumingClient) -> None:
            await client.connect(legs)
            await token_of(client)

        async with trio.open_nursery() as at_once:
            for client in clients:
                at_once.start_soon(open_session, client)
        body = await health(faucet)
        assert [w["sessions"] for w in body["workers"]] == [2, 2]
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(direct_url(faucet)):
                pass
        assert rejected.value.status_code == 503
        async with faucet.client() as http:
            page = await http.get("/", headers={"accept": "text/html,*/*;q=0.8"})
            asset = await http.get("/shared/shiny.js")
        assert page.status_code == 503 and page.headers["retry-after"] == "10"
        assert "All sessions are in use" in page.text
        assert asset.status_code != 503  # only new sessions and page loads are refused
        await clients[0].ws.aclose()
        body = await until_health(faucet, lambda body: body["sessions"]["live"] == 3)
        freed = [w["worker_id"] for w in body["workers"] if w["sessions"] == 1]
        newcomer = ResumingClient(direct_url(faucet))
        await newcomer.connect(legs)
        await token_of(newcomer)
        body = await health(faucet)
        assert [w["sessions"] for w in body["workers"]] == [2, 2]
        assert len(freed) == 1
        legs.cancel_scope.cancel()


async def test_requests_bound_to_a_session_go_to_its_worker(tmp_path, sink):
    config = standin_config(tmp_path, workers=2, telemetry=TelemetryConfig(sink="memory"))
    async with run_faucet(config) as faucet, trio.open_nursery() as legs:
        tokens = {}
        for _ in range(2):
            client = ResumingClient(direct_url(faucet))
            await client.connect(legs)
            tokens[await token_of(client)] = client
        workers = {w["worker_id"]: w["sessions"] for w in (await health(faucet))["workers"]}
        assert workers == {1: 1, 2: 1}
        async with faucet.client() as http:
            for token in tokens:
                for _ in range(3):
                    await http.get(f"/session/{token}/download/report?w=")
        legs.cancel_scope.cancel()
    upgrades = {e.query_params: e.target for e in sink.events if e.status == 101}
    by_token = {}
    for event in sink.events:
        if event.path.startswith("/session/"):
            by_token.setdefault(event.path.split("/")[2], set()).add(event.target)
    assert {token: targets for token, targets in by_token.items()} == {
        token: {upgrades[f"sessionId={client.session_id}&attempt=0&received=0"]}
        for token, client in tokens.items()}


async def test_the_reconnect_script_is_served_under_any_prefix(tmp_path):
    async with run_faucet(standin_config(tmp_path, workers=1)) as faucet:
        async with faucet.client() as http:
            for path in ("/__faucet__/reconnect.js", "/app/sub/__faucet__/reconnect.js"):
                answer = await http.get(path)
                assert answer.status_code == 200
                assert answer.headers["content-type"] == "text/javascript"
                assert b"Shiny.createSocket" in answer.content


async def test_a_routed_app_resumes_under_its_prefix(tmp_path):
    route = RouteConfig("/app/", "shiny", workers=1, workdir=str(tmp_path))
    config = standin_config(tmp_path, route=[route])
    async with (run_faucet(config, routes=RouteTable([route])) as faucet,
                network(faucet, "/app/") as (forwarder, url), trio.open_nursery() as legs):
        async with faucet.client() as http:
            assert (await http.get("/app/__faucet__/reconnect.js")).status_code == 200
            # served only where a Shiny app's pages use it (it answered every path before)
            assert (await http.get("/other/__faucet__/reconnect.js")).status_code == 404
        client = ResumingClient(url)
        await client.connect(legs)
        await token_of(client)
        await client.send("m1")
        forwarder.cut()
        await dropped(client)
        forwarder.restore()
        await client.connect(legs)
        await client.send("log")
        assert json.loads(await client.receive()) == ["m1"]
        legs.cancel_scope.cancel()


async def test_without_grace_a_session_ends_with_its_connection_and_keeps_its_heartbeat(
        tmp_path):
    config = standin_config(tmp_path, workers=1, reconnect_grace=0, heartbeat_interval=0.2,
                            heartbeat_timeout=1)
    async with session_behind_forwarder(config) as (faucet, forwarder, client, legs, _):
        with trio.fail_after(5):  # the page's watchdog needs faucet's pings
            assert await client.ws.get_message() == "ping"
        forwarder.cut()
        await until_health(faucet, lambda body: body["sessions"]["live"] == 0)
        await told_to_reload_once_back(forwarder, client, legs)


async def test_each_session_records_its_websocket_connection_events(tmp_path, sink):
    """The Rust server's websocket_connection events: opened (its id is the session id R
    sees), a reconnect and the end, each naming the session as its parent."""
    sink.event_types = (HttpEvent, LogEvent)
    config = standin_config(tmp_path, workers=1, telemetry=TelemetryConfig(sink="memory"),
                            reconnect_grace=0.5)
    async with session_behind_forwarder(config) as (faucet, forwarder, client, legs, _):
        forwarder.cut()
        await dropped(client)
        forwarder.restore()
        await client.connect(legs)
        await client.ws.aclose()  # the client closes on purpose: the session ends
        await until(lambda: any("ended" in e.message for e in session_events(sink)))
        legs.cancel_scope.cancel()
    opened, reconnected, ended = session_events(sink)
    assert opened.message.startswith("session opened") and opened.parent_event_id is None
    assert "reconnected" in reconnected.message and "ended" in ended.message
    assert reconnected.parent_event_id == ended.parent_event_id == opened.event_id
    assert {e.target for e in (opened, reconnected, ended)} == {"faucet"}
    assert opened.worker_id == 1


def session_events(sink) -> list[LogEvent]:
    return [e for e in sink.events
            if isinstance(e, LogEvent) and e.event_type == "websocket_connection"]
