"""WebSocket memory and session limits (issue 10): the stand-in echo worker from
tests/ws_support.py behind a real faucet; raw frames through wsproto where a client
must misbehave."""

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected, open_websocket_url
from wsproto.events import CloseConnection, TextMessage

from faucet.http.ws_budget import WebSocketBudget
from tests.helpers import run_faucet
from tests.raw_ws import RawWebSocket
from tests.ws_support import echo_config

MIB = 1024 * 1024


def ws_url(faucet, path: str = "/") -> str:
    return faucet.url.replace("http://", "ws://") + path


async def health(faucet) -> dict:
    async with httpx.AsyncClient(base_url=faucet.url) as client:
        return (await client.get("/__faucet__/health")).json()


class RawClient(RawWebSocket):
    """A WebSocket client that can leave a message unfinished."""

    @classmethod
    async def connect(cls, faucet) -> "RawClient":
        client = await cls.open(faucet.url, "/")
        assert client.accepted
        return client

    async def send_fragment(self, data: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data, message_finished=False)))


def test_the_budget_charges_and_refuses_what_does_not_fit():
    budget = WebSocketBudget(memory=100, max_websockets=1)
    assert budget.take(60) and not budget.take(41) and budget.used == 60
    budget.give(60)
    assert budget.take(100)
    assert budget.open_session() is None and "1 WebSocket" in budget.open_session()
    budget.close_session()
    assert budget.open_session() is None


async def test_unfinished_messages_over_the_shared_budget_close_with_1009(tmp_path):
    """Clients that never finish a message cannot grow faucet past websocket_memory: the
    fragment that does not fit closes its session with 1009, and what it held is freed."""
    config = echo_config(tmp_path, workers=1, websocket_memory="1M")
    async with run_faucet(config) as faucet:
        first = await RawClient.connect(faucet)
        for _ in range(6):
            await first.send_fragment("a" * (128 * 1024))  # 768 KiB held, unfinished
        second = await RawClient.connect(faucet)
        for _ in range(4):
            await second.send_fragment("b" * (128 * 1024))
        closed = await second.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1009
        await first.stream.aclose()
        await second.stream.aclose()
        with trio.fail_after(10):
            while (await health(faucet))["websockets"]["unfinished_bytes"]:
                await trio.testing.wait_all_tasks_blocked()
        async with open_websocket_url(ws_url(faucet)) as ws:  # and it works again
            await ws.send_message("after")
            assert await ws.get_message() == "after"


async def test_sessions_over_max_websockets_get_503(tmp_path):
    async with run_faucet(echo_config(tmp_path, workers=1, max_websockets=1)) as faucet:
        async with open_websocket_url(ws_url(faucet)) as ws:
            await ws.send_message("hold")
            assert await ws.get_message() == "hold"
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(ws_url(faucet)):
                    pass
            assert rejected.value.status_code == 503
            assert (await health(faucet))["websockets"]["open"] == 1


async def test_no_upgrade_reaches_an_app_kind_without_websockets(tmp_path):
    config = echo_config(tmp_path, workers=1, type="plumber")
    async with run_faucet(config) as faucet:
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(ws_url(faucet)):
                pass
        assert rejected.value.status_code == 400
        assert (await health(faucet))["websockets"]["open"] == 0


def test_one_client_address_opens_at_most_its_share_of_websockets():
    budget = WebSocketBudget(memory=100, max_websockets=10, per_client=2)
    assert budget.open_session("10.0.0.1") is None and budget.open_session("10.0.0.1") is None
    assert "this address has 2" in budget.open_session("10.0.0.1")
    assert budget.open_session("10.0.0.2") is None
    budget.close_session("10.0.0.1")
    assert budget.open_session("10.0.0.1") is None
    assert budget.statistics()["open"] == 3 and budget.statistics()["clients"] == 2
