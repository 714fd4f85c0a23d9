"""The front door's limits on real sockets (issue 10: slowloris, connection caps,
clients that stop reading, accept errors), with small in-process ASGI apps."""

from __future__ import annotations

import logging
import resource

import pytest
import trio

from faucet.app import front_limits
from faucet.edge.fd_limit import RESERVED, connection_budget, raise_open_file_limit
from faucet.edge.front import Limits, RateLimitedLog
from faucet.edge.hypercorn_adapter import hypercorn_config
from tests.helpers import config_for, read_all, start_front

BIG = 32 * 1024 * 1024
AUTOJUMP = 0.02  # real seconds of quiet sockets before the virtual clock jumps


class App:
    """Answers ``/big`` with BIG bytes, anything else with its path; ``finished`` is set
    each time a response has been handed to the front door."""

    def __init__(self) -> None:
        self.finished = trio.Event()

    async def __call__(self, scope, receive, send):
        body = b"x" * BIG if scope["path"] == "/big" else scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        self.finished.set()


async def test_a_head_trickled_byte_by_byte_gets_408_at_its_total_deadline(nursery,
                                                                           mock_clock):
    """Slowloris: each byte arrives well within any per-read timeout, but the head as a
    whole must be done within head_timeout (virtual time: the clock jumps once the
    sockets have been quiet for AUTOJUMP real seconds)."""
    mock_clock.autojump_threshold = AUTOJUMP
    port = (await start_front(nursery, App(), Limits(head_timeout=0.3)))[0]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\n")
    start = trio.current_time()
    for _ in range(5):  # a byte every 0.05 s, the last before the 0.3 s deadline
        await trio.sleep(0.05)
        await stream.send_all(b"X")
    assert (await read_all(stream)).startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - start == pytest.approx(0.3, abs=0.03)


async def test_an_idle_connection_closes_after_keep_alive_timeout(nursery, mock_clock):
    """The setting reaches the front door, which closes a connection idle that long."""
    assert hypercorn_config(config_for(keep_alive_timeout=42)).keep_alive_timeout == 42
    mock_clock.autojump_threshold = AUTOJUMP
    port = (await start_front(nursery, App(), keep_alive=2))[0]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    answered = await stream.receive_some(65536)
    assert answered.startswith(b"HTTP/1.1 200 ")
    idle_from = trio.current_time()
    assert await read_all(stream) == b""  # closed, with nothing more
    assert trio.current_time() - idle_from == pytest.approx(2, abs=0.05)


async def test_at_max_connections_an_idle_connection_gives_its_slot_to_a_new_client(
        nursery, mock_clock):
    """A keep-alive connection between requests holds a slot; a new client waiting in
    the backlog takes it (the idle one is closed, as nginx drops idle keep-alives when
    out of connections), instead of waiting for it to time out."""
    mock_clock.autojump_threshold = AUTOJUMP
    port = (await start_front(nursery, App(), Limits(max_connections=1)))[0]
    holder = await trio.open_tcp_stream("127.0.0.1", port)
    await holder.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"/first" in await holder.receive_some(65536)
    waiting = await trio.open_tcp_stream("127.0.0.1", port)  # accepted by the kernel only
    await waiting.send_all(b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await read_all(waiting)).endswith(b"/second")
    assert await read_all(holder) == b""  # the idle one was closed for it


async def test_slow_heads_holding_every_slot_do_not_keep_new_clients_out(nursery):
    """Slowloris beyond the fd budget: every slot held by a head still trickling in. A
    new client is served at once; the oldest slow head gets 408 and is closed."""
    port = (await start_front(nursery, App(), Limits(max_connections=2, head_timeout=60)))[0]
    slow = []
    for _ in range(2):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /slow HTTP/1.1\r\nX-A: ")
        slow.append(stream)
    await trio.testing.wait_all_tasks_blocked()
    fresh = await trio.open_tcp_stream("127.0.0.1", port)
    await fresh.send_all(b"GET /fresh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with trio.fail_after(10):  # a guard: before, it waited for head_timeout (60 s)
        assert (await read_all(fresh)).endswith(b"/fresh")
        assert (await read_all(slow[0])).startswith(b"HTTP/1.1 408 ")


async def test_a_client_that_stops_reading_does_not_hold_the_app(nursery):
    """The app's writes are given up after send_timeout, so whatever it holds (an R
    worker's slot) is released; the connection is closed."""
    app = App()
    port = (await start_front(nursery, app, Limits(send_timeout=0.2)))[0]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(10):
        await app.finished.wait()
    received = len(await read_all(stream))
    assert received < BIG  # cut short: the client never read


async def test_accept_errors_are_logged_once_per_period_with_a_count(autojump_clock, caplog):
    caplog.set_level(logging.ERROR, logger="faucet.front")
    errors = RateLimitedLog(every=10)
    for _ in range(250):  # one every 0.1 s for 25 s, as an exhausted accept loop would
        errors.note("cannot accept connections: Too many open files")
        await trio.sleep(0.1)
    counts = [int(r.getMessage().rsplit("(", 1)[1].split()[0]) for r in caplog.records]
    assert len(counts) == 3 and counts[0] == 1  # the first at once, then one per 10 s
    assert sum(counts) + errors.unlogged == 250


def test_the_soft_open_file_limit_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = raise_open_file_limit()
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0] > lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_max_connections_is_lowered_to_what_the_descriptors_carry(caplog):
    assert connection_budget(RESERVED + 2000) == 1000
    limits = front_limits(config_for(max_connections=100_000), open_files=1024)
    assert limits.max_connections == connection_budget(1024) == 384
    assert "max_connections = 100000" in caplog.text
    assert front_limits(config_for(), open_files=20_000).max_connections == 4096
