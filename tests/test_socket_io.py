"""faucet.http.socket_io on socket pairs: calls that need not wait do not, calls that
must wait do, and errors are trio's stream errors."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from faucet.http import socket_io


def pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    ours, theirs = trio.socket.socketpair()
    return trio.SocketStream(ours), trio.SocketStream(theirs)


async def test_receive_now_returns_none_when_nothing_is_there_and_bytes_when_they_are():
    ours, theirs = pair()
    assert socket_io.receive_now(ours, 100) is None
    await theirs.send_all(b"hello")
    assert socket_io.receive_now(ours, 100) == b"hello"
    await theirs.send_eof()
    assert socket_io.receive_now(ours, 100) == b""


async def test_receive_some_waits_for_bytes_that_come_later():
    ours, theirs = pair()
    got = []

    async def reader():
        got.append(await socket_io.receive_some(ours, 100))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # waiting, not spinning
        await theirs.send_all(b"late")
    assert got == [b"late"]


async def test_send_now_returns_what_the_kernel_did_not_take_and_send_all_waits_for_it():
    ours, theirs = pair()
    data = b"y" * (4 * 1024 * 1024)
    rest = socket_io.send_now(ours, data)
    assert 0 < len(rest) < len(data)  # a full buffer took part of it
    received = bytearray()

    async def reader():
        while len(received) < len(data):
            received.extend(await theirs.receive_some(1 << 20))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await socket_io.send_all(ours, rest)
    assert received == data


async def test_a_send_to_a_closed_peer_is_a_broken_stream_and_a_closed_socket_is_closed():
    ours, theirs = pair()
    await theirs.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await socket_io.send_all(ours, b"x" * 100_000)
    await ours.aclose()
    with pytest.raises(trio.ClosedResourceError):
        socket_io.receive_now(ours, 10)
    with pytest.raises(trio.ClosedResourceError):
        await socket_io.send_all(ours, b"x")


async def test_a_run_of_calls_that_never_wait_still_checkpoints_now_and_then():
    ours, theirs = pair()
    calls = 0
    with trio.CancelScope() as scope:
        scope.cancel()  # seen only at a checkpoint
        for calls in range(1, 2 * socket_io.YIELD_EVERY + 1):  # noqa: B007
            await socket_io.send_all(ours, b"z")
    assert scope.cancelled_caught
    assert calls <= socket_io.YIELD_EVERY
    assert await theirs.receive_some(1000) == b"z" * calls  # every one went at once
