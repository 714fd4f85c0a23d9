"""One connection's failure stays its own (issue 18 item 1): exact byte sequences that
once ended faucet and every worker with it, each sent many times, after which faucet must
still answer an ordinary request."""

import base64
import logging
import os
import uuid

import pytest
import trio

from faucet.edge.front import Front, Limits, Replay
from faucet.edge.hypercorn_adapter import HypercornConfig
from tests.edge_support import http, recorded_faucet
from tests.helpers import run_faucet
from tests.shiny_standin import standin_config

ROUNDS = 50


def upgrade(target: str) -> bytes:
    """A WebSocket handshake for ``target``, as a browser writes it."""
    key = base64.b64encode(os.urandom(16)).decode()
    return http(f"GET {target} HTTP/1.1", "Host: x", "Upgrade: websocket",
                "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13")


def masked_close(code: int = 1000) -> bytes:
    """A client's close frame (clients must mask): FIN + opcode 8, then the code."""
    mask = os.urandom(4)
    payload = code.to_bytes(2, "big")
    return b"\x88" + bytes([0x80 | len(payload)]) + mask + bytes(
        byte ^ mask[i % 4] for i, byte in enumerate(payload))


async def still_answers(url: str) -> int:
    """The status of faucet's own health answer on a new connection (faucet must still
    be there to give it)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(http("GET /__faucet__/health HTTP/1.1", "Host: x",
                                   "Connection: close"))
        head = b""
        with trio.fail_after(10):
            while b"\r\n" not in head:
                data = await stream.receive_some(4096)
                assert data, "faucet closed the connection without an answer"
                head += data
    return int(head.split(b" ")[1])


async def test_bytes_right_behind_an_upgrade_head_close_only_that_connection(tmp_path,
                                                                             monkeypatch):
    async with recorded_faucet(tmp_path, monkeypatch) as edge:
        for _ in range(ROUNDS):
            async with edge.connect() as client:
                await client.send(upgrade("/") + b"garbage-early-bytes")
                reply = await client.reply()
                assert reply.status in (400, 502), reply
        assert await still_answers(edge.faucet.url) == 200


async def test_a_close_frame_racing_session_gone_closes_only_that_connection(tmp_path):
    config = standin_config(tmp_path, workers=1)
    async with run_faucet(config) as faucet:
        url = faucet.url.removeprefix("http://")
        host, port = url.rsplit(":", 1)
        for _ in range(ROUNDS):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(upgrade(f"/websocket/?sessionId={uuid.uuid4()}"
                                              "&attempt=1"))
                head = b""
                with trio.fail_after(10):
                    while b"\r\n\r\n" not in head:
                        data = await stream.receive_some(4096)
                        assert data, head
                        head += data
                assert head.startswith(b"HTTP/1.1 101"), head
                try:
                    await stream.send_all(masked_close())
                except trio.BrokenResourceError:
                    pass
        assert await still_answers(faucet.url) == 200


async def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    left, right = trio.socket.socketpair()
    return trio.SocketStream(left), trio.SocketStream(right)


async def test_the_replays_eof_waits_for_a_write_in_progress(nursery):
    """hypercorn calls send_eof outside its own send lock; a write in progress then made
    trio raise BusyResourceError out of the connection."""
    ours, theirs = await socket_pair()
    replay = Replay(ours, b"", send_timeout=60)
    writing = trio.Event()

    async def write_a_lot():
        writing.set()
        await replay.send_all(b"x" * (8 << 20))  # more than the socket buffers hold

    nursery.start_soon(write_a_lot)
    await writing.wait()
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(replay.send_eof)  # raised BusyResourceError before
    received = 0
    with trio.fail_after(10):
        while data := await theirs.receive_some(1 << 20):
            received += len(data)
    assert received == 8 << 20  # the whole write, then the EOF


async def test_the_replay_gives_up_on_a_client_that_takes_no_write(autojump_clock):
    ours, theirs = await socket_pair()
    replay = Replay(ours, b"", send_timeout=5)
    start = trio.current_time()
    with pytest.raises(trio.BrokenResourceError):
        await replay.send_all(b"x" * (8 << 20))
    assert trio.current_time() - start == pytest.approx(5)


class _FailingHandOff:
    async def serve(self, stream) -> None:
        raise RuntimeError("an upgrade went wrong")


async def test_a_failure_inside_one_connection_is_logged_and_closes_only_it(caplog):
    caplog.set_level(logging.ERROR, logger="faucet.front")
    front = Front(None, HypercornConfig(), trio.Event(), Limits(h2c=True))
    front.hand_off = _FailingHandOff()
    ours, theirs = await socket_pair()
    await theirs.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # handed to hypercorn
    await front.serve_connection(ours)  # raised RuntimeError before
    assert await theirs.receive_some(10) == b""  # closed
    assert "a client connection failed and was closed" in caplog.text
    assert "an upgrade went wrong" in caplog.text  # the traceback goes with it
