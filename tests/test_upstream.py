"""UpstreamPool.exchange on in-process socket pairs: the test plays the worker byte by
byte, so stale connections, replays, framings and leftover bytes are exact and fast."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

from faucet.pool.backend import Backend
from faucet.proxy.upstream import UpstreamError, UpstreamPool

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class FakeWorker:
    """Hands the pool one end of a socket pair per connection and keeps the other."""

    def __init__(self) -> None:
        self.ends: list[trio.SocketStream] = []
        self.refuse = False

    async def connect(self, port: int) -> trio.SocketStream:
        if self.refuse:
            raise ConnectionRefusedError(111, "Connection refused")
        ours, theirs = trio.socket.socketpair()
        self.ends.append(trio.SocketStream(theirs))
        return trio.SocketStream(ours)

    async def read_request(self, index: int = -1, until: bytes = b"\r\n\r\n") -> bytes:
        """What the worker received on connection ``index`` up to ``until``."""
        data = b""
        with trio.fail_after(5):
            while until not in data:
                chunk = await self.ends[index].receive_some(65536)
                assert chunk, f"connection closed after {data!r}"
                data += chunk
        return data


@pytest.fixture
def worker():
    return FakeWorker()


@pytest.fixture
def pool(worker):
    return UpstreamPool(Backend(worker_id=1, port=1), connect=worker.connect)


def pieces(*chunks: bytes):
    """A body source that yields ``chunks``, the last with more=False."""
    queue = list(chunks)

    async def next_piece() -> tuple[bytes, bool]:
        data = queue.pop(0)
        return data, bool(queue)

    return next_piece


async def body_of(conn) -> bytes:
    data = b""
    while chunk := await conn.body_chunk():
        data += chunk
    return data


async def round_trip(pool, worker, method="GET", head=b"GET / HTTP/1.1\r\n\r\n", reply=OK,
                     body=None, chunked=False):
    """One exchange against a worker that answers ``reply`` once it has the request."""
    exchanged = {}

    async def exchange():
        exchanged["conn"], exchanged["response"] = await pool.exchange(head, method, body,
                                                                        chunked)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(exchange)
        await trio.testing.wait_all_tasks_blocked()  # sent, or the test fails below
        await worker.read_request()
        await worker.ends[-1].send_all(reply)
    conn, response = exchanged["conn"], exchanged["response"]
    data = await body_of(conn)
    pool.put_back(conn)
    round_trip.last = conn
    return response, data


async def test_a_clean_exchange_is_pooled_and_reused(pool, worker):
    response, data = await round_trip(pool, worker)
    assert (response.status, data) == (200, b"ok")
    await round_trip(pool, worker)
    assert len(worker.ends) == 1


async def test_chunked_upload_is_framed_once_and_ends_with_the_last_chunk(pool, worker):
    head = b"POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.exchange, head, "POST", pieces(b"ab", b"", b"cde"), True)
        await trio.testing.wait_all_tasks_blocked()
        received = await worker.read_request(until=b"0\r\n\r\n")
        await worker.ends[0].send_all(OK)
    assert received == head + b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


async def test_close_delimited_response_is_read_to_the_end_and_not_pooled(pool, worker):
    reply = b"HTTP/1.1 200 OK\r\n\r\nuntil close"

    async with trio.open_nursery() as nursery:
        async def answer():
            await worker.read_request()
            await worker.ends[0].send_all(reply)

        nursery.start_soon(answer)
        conn, _ = await pool.exchange(b"GET / HTTP/1.1\r\n\r\n", "GET", None, False)
    # (the exchange returns once the head is in; the worker then sends the rest)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.ends[0].aclose)
        assert await body_of(conn) == b"until close"
    pool.put_back(conn)
    await round_trip(pool, worker)
    assert len(worker.ends) == 2


async def test_bytes_after_a_response_keep_the_connection_out_of_the_pool(pool, worker):
    """A worker that sends more than its Content-Length: the extra bytes would be read as
    the next client's response."""
    response, data = await round_trip(pool, worker, reply=OK + b"HTTP/1.1 200 OK\r\n")
    assert data == b"ok"
    await round_trip(pool, worker)
    assert len(worker.ends) == 2


async def test_stray_bytes_arriving_while_idle_are_never_read_as_a_response(pool, worker):
    await round_trip(pool, worker)
    await worker.ends[0].send_all(b"HTTP/1.1 500 stale\r\nContent-Length: 0\r\n\r\n")
    response, _ = await round_trip(pool, worker)
    assert response.status == 200 and len(worker.ends) == 2


async def test_head_response_with_a_body_anyway_does_not_poison_the_pool(pool, worker):
    """plumber answers HEAD 404/405 with a body; the next request must not read it."""
    response, data = await round_trip(pool, worker, method="HEAD",
                                      head=b"HEAD /x HTTP/1.1\r\n\r\n",
                                      reply=b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\n")
    assert (response.status, data) == (404, b"")
    with contextlib.suppress(trio.BrokenResourceError):  # faucet may have closed it
        await worker.ends[0].send_all(b"nope!")  # its second write(), after the head
    response, data = await round_trip(pool, worker, method="DELETE",
                                      head=b"DELETE /car HTTP/1.1\r\n\r\n")
    assert (response.status, data) == (200, b"ok")
    assert len(worker.ends) == 2


async def test_a_worker_closing_an_idle_connection_gets_a_fresh_one(pool, worker):
    await round_trip(pool, worker)
    await worker.ends[0].aclose()
    response, _ = await round_trip(pool, worker, method="POST",
                                   head=b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
    assert response.status == 200 and len(worker.ends) == 2


async def test_a_post_that_may_have_reached_the_worker_is_never_sent_again(pool, worker):
    await round_trip(pool, worker)  # the POST goes out on a reused connection

    async def pay():
        with pytest.raises(UpstreamError, match="without answering"):
            await pool.exchange(b"POST /pay HTTP/1.1\r\ncontent-length: 0\r\n\r\n", "POST",
                                None, False)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pay)
        await trio.testing.wait_all_tasks_blocked()
        assert b"POST /pay" in await worker.read_request()
        await worker.ends[0].aclose()  # read it, then died without answering
    assert len(worker.ends) == 1  # not sent again on a new connection


async def test_a_get_whose_send_fails_on_a_reused_connection_is_retried(pool, worker):
    await round_trip(pool, worker)
    round_trip.last.stream.socket.shutdown(trio.socket.SHUT_WR)  # pooled, can no longer send
    response, _ = await round_trip(pool, worker)
    assert response.status == 200 and len(worker.ends) == 2


async def test_connect_failure_is_an_upstream_error_naming_the_worker(pool, worker):
    worker.refuse = True
    with pytest.raises(UpstreamError, match="cannot connect to Worker::1"):
        await pool.exchange(b"GET / HTTP/1.1\r\n\r\n", "GET", None, False)


async def test_a_get_meeting_the_keep_alive_race_is_retried_on_a_new_connection(pool, worker):
    """The worker closes an idle connection just as a GET goes out on it: not a byte of
    answer came, and GET is safe, so it goes again on a new connection (RFC 9112 9.3.1)."""
    await round_trip(pool, worker)
    exchanged = {}

    async def get():
        conn, exchanged["response"] = await pool.exchange(b"GET /again HTTP/1.1\r\n\r\n",
                                                          "GET", None, False)
        exchanged["body"] = await body_of(conn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(get)
        await trio.testing.wait_all_tasks_blocked()  # sent on the pooled connection
        await worker.ends[0].aclose()
        await trio.testing.wait_all_tasks_blocked()  # and sent again on a new one
        assert b"GET /again" in await worker.read_request()
        await worker.ends[1].send_all(OK)
    assert (exchanged["response"].status, exchanged["body"]) == (200, b"ok")
