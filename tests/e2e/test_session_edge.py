"""Shiny sessions against misbehaving clients (issue 18 items 6-10): the stand-in echo
worker (tests/ws_support.py, a shiny app kind) behind a real faucet, raw clients from
tests/raw_ws.py."""

import contextlib
import uuid

import httpx
import trio
from wsproto.events import CloseConnection

from tests.helpers import run_faucet
from tests.raw_ws import RawWebSocket
from tests.shiny_client import ResumingClient
from tests.ws_support import echo_config


async def health(faucet) -> dict:
    async with httpx.AsyncClient(base_url=faucet.url) as client:
        return (await client.get("/__faucet__/health")).json()


async def until_health(faucet, predicate, deadline: float = 15) -> dict:
    """Poll the health endpoint until ``predicate(body)`` holds (the deadline only keeps
    a broken test from hanging)."""
    with trio.fail_after(deadline):
        while not predicate(body := await health(faucet)):  # noqa: ASYNC110 (over HTTP)
            await trio.sleep(0.1)
    return body


def session_target(session_id: uuid.UUID | str, attempt: int = 0) -> str:
    return f"/websocket/?sessionId={session_id}&attempt={attempt}&received=0"


async def test_a_client_that_stops_reading_then_resets_lets_go_of_its_session(tmp_path):
    """Item 6: a client that stops reading, sends pings and messages, then resets. Its
    leg used to deadlock (the writer held the leg's lock inside a blocked send, the reader
    waited for that lock to answer a ping, hypercorn waited for the reader to take the
    disconnect) and the session stayed attached until faucet restarted."""
    config = echo_config(tmp_path, workers=1, send_timeout=1, heartbeat_interval=0.5,
                         heartbeat_timeout=3)
    async with run_faucet(config) as faucet:
        client = await RawWebSocket.open(faucet.url, session_target(uuid.uuid4()),
                                         receive_buffer=4096)
        assert client.accepted
        for _ in range(8):
            await client.send("big 1000000")  # the worker answers 8 MB; it is never read
        for _ in range(30):
            await client.send("ping")
        client.reset()
        body = await until_health(faucet, lambda b: b["sessions"]["waiting"] == 1)
        assert body["sessions"]["live"] == 1 and body["websockets"]["open"] == 0


async def test_duplicate_session_ids_at_once_leave_no_count_behind(tmp_path):
    """Item 7: two new sessions with one id at the same moment were both placed; the
    registry kept one, and neither's end uncounted it, until max_sessions refused every
    page. Now the second is refused (409) before it reaches a worker, and the counts go
    back to zero."""
    config = echo_config(tmp_path, workers=2, max_sessions=5, reconnect_grace=0)
    async with run_faucet(config) as faucet:
        statuses = []
        for _ in range(6):
            session_id = uuid.uuid4()
            clients = []

            async def connect(session_id=session_id, clients=clients):
                clients.append(await RawWebSocket.open(faucet.url, session_target(session_id)))

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(connect)
            statuses += sorted(client.status for client in clients)
            for client in clients:
                client.reset()
        assert statuses.count(101) >= 6 and set(statuses) <= {101, 409}
        body = await until_health(faucet, lambda b: b["sessions"]["live"] == 0)
        assert [w["sessions"] for w in body["workers"]] == [0, 0]
        fresh = await RawWebSocket.open(faucet.url, session_target(uuid.uuid4()))
        assert fresh.accepted


async def test_a_session_that_never_acknowledges_loses_its_session_not_anothers_share(
        tmp_path):
    """Item 8: sessions whose clients keep the connection alive but never acknowledge
    filled reconnect_buffer_total, and every other session's messages then waited a
    heartbeat round each. Now the one holding the most is ended (4001) when another
    needs room."""
    config = echo_config(tmp_path, workers=1, reconnect_buffer="100K",
                         reconnect_buffer_total="200K", heartbeat_interval=3,
                         heartbeat_timeout=10, send_timeout=2)
    async with run_faucet(config) as faucet, trio.open_nursery() as nursery:
        hogs = [await RawWebSocket.open(faucet.url, session_target(uuid.uuid4()),
                                        receive_buffer=4096) for _ in range(3)]

        async def keep_alive(hog: RawWebSocket) -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                while True:  # a message now and then, never a pong
                    await hog.send("ping")
                    await trio.sleep(1)

        for hog in hogs:
            await hog.send("big 90000")
            nursery.start_soon(keep_alive, hog)
        await until_health(faucet, lambda b: b["sessions"]["buffered"] >= 270_000)
        victim = ResumingClient(faucet.url.replace("http://", "ws://") + "/websocket/")
        await victim.connect(nursery)
        with trio.fail_after(8):  # each message used to wait 3 s for the next ping
            for i in range(8):
                await victim.send(f"m{i}")
                assert await victim.receive() == f"m{i}"
        body = await health(faucet)
        assert body["sessions"]["live"] < 4 and body["sessions"]["buffered"] <= 200_000
        nursery.cancel_scope.cancel()


async def test_idle_websockets_without_the_heartbeat_close_and_one_address_has_a_share(
        tmp_path):
    """Item 9: 50 idle WebSockets without a sessionId held every max_websockets slot
    for as long as they liked; one address may now hold max_websockets_per_client, and
    a WebSocket that carries no message for websocket_idle_timeout is closed (1001)."""
    config = echo_config(tmp_path, workers=1, max_websockets_per_client=2,
                         websocket_idle_timeout=0.5)
    async with run_faucet(config) as faucet:
        first, second, third = [await RawWebSocket.open(faucet.url, "/websocket/")
                                for _ in range(3)]
        assert (first.status, second.status, third.status) == (101, 101, 503)
        closed = await first.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1001
        await until_health(faucet, lambda b: b["websockets"]["open"] == 0)


async def test_an_abandoned_session_that_never_sent_a_message_waits_less(tmp_path):
    """Item 9: sessions opened and dropped before their first message (no Shiny init)
    were held for all of reconnect_grace; now for reconnect_grace_unused."""
    config = echo_config(tmp_path, workers=1, reconnect_grace=60, reconnect_grace_unused=0.2,
                         max_sessions_per_client=3)
    async with run_faucet(config) as faucet:
        used = await RawWebSocket.open(faucet.url, session_target(uuid.uuid4()))
        await used.send("init")
        clients = [await RawWebSocket.open(faucet.url, session_target(uuid.uuid4()))
                   for _ in range(3)]
        assert [c.status for c in clients] == [101, 101, 503]  # 3 per address
        for client in (used, *clients):
            client.reset()
        body = await until_health(faucet, lambda b: b["sessions"]["live"] == 1)
        assert body["sessions"]["waiting"] == 1  # the one that sent a message
        assert (await RawWebSocket.open(faucet.url, session_target(uuid.uuid4()))).accepted
