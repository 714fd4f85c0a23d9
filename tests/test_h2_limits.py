"""HTTP/2 (h2c on) gets the limits of faucet's HTTP/1.1 path (issue 18 items 2, 3, 5):
rapid reset, fan-out, zero flow-control windows and malformed heads, each sent as raw
h2 frames to faucet's front door serving a small ASGI app in-process."""

from __future__ import annotations

import h2.errors
import h2.events
import pytest
import trio

from faucet.edge.front import Limits
from faucet.http.client_cancel import ClientCancel
from faucet.http.request import CANCEL_EXTENSION
from tests.h2_client import H2Client
from tests.helpers import STANDIN, AsgiApp, config_for, read_all, run_faucet, start_front, until

CHUNK = 64 * 1024


class App:
    """``/hold`` waits until cancelled (committed to a "worker" with ``?committed``);
    ``/big`` sends 64 pieces of 64 KiB; anything else answers its path."""

    def __init__(self):
        self.calls: list[str] = []
        self.holding = 0
        self.cancelled = 0
        self.sent = 0  # bytes of /big the server accepted from the app
        self.ended = trio.Event()

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"]
        self.calls.append(path)
        try:
            if path == "/hold":
                await self._hold(scope)
            elif path == "/big":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                for _ in range(64):
                    await send({"type": "http.response.body", "body": b"x" * CHUNK,
                                "more_body": True})
                    self.sent += CHUNK
                await send({"type": "http.response.body", "body": b""})
            else:
                body = path.encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        except trio.Cancelled:
            self.cancelled += 1
            raise
        finally:
            if path == "/big":
                self.ended.set()

    async def _hold(self, scope) -> None:
        cancel: ClientCancel = scope["extensions"][CANCEL_EXTENSION]
        if scope["query_string"] == b"committed":
            with cancel.committed():
                self.holding += 1
                await trio.sleep_forever()
        self.holding += 1
        await trio.sleep_forever()


async def served(nursery, **limits) -> tuple[int, App]:
    app = App()
    port, _ = await start_front(nursery, app, Limits(h2c=True, **limits))
    return port, app


async def test_streams_opened_and_reset_in_one_read_never_reach_the_app(nursery):
    """CVE-2023-44487's pattern: HEADERS + RST_STREAM pairs. Before, each pair started a
    request that claimed a worker for nobody; now none reaches the app, and the
    connection still serves a real request."""
    port, app = await served(nursery)
    client = await H2Client.connect(port)
    for _ in range(50):
        client.reset(client.request("/reset"))
    real = client.request("/real")
    await client.flush()
    assert await client.response(real) == (200, b"/real")
    assert app.calls == ["/real"]


async def test_a_reset_cancels_the_request_it_ends(nursery):
    """A request waiting (in the queue, for a worker) is cancelled by its stream's reset;
    before, the app went on as if the client still waited."""
    port, app = await served(nursery)
    client = await H2Client.connect(port)
    stream_id = client.request("/hold")
    await client.flush()
    await until(lambda: app.holding == 1)
    client.reset(stream_id)
    await client.flush()
    await until(lambda: app.cancelled == 1)


async def test_too_many_resets_get_goaway(nursery):
    """A connection resetting streams past h2_max_resets is closed with GOAWAY
    ENHANCE_YOUR_CALM (nginx 1.25.3+); before, it was served on."""
    port, app = await served(nursery, h2_max_resets=10)
    client = await H2Client.connect(port)
    for _ in range(30):
        client.reset(client.request("/reset"))
    after = client.request("/after")
    await client.flush()
    await client.until(lambda events: client.goaway() is not None)
    assert client.goaway().error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert app.calls == []
    await client.until(lambda events: False)  # the connection ends
    assert after not in {getattr(e, "stream_id", None) for e in client.events
                         if isinstance(e, h2.events.ResponseReceived)}


async def test_reset_requests_still_running_count_against_the_stream_limit(nursery):
    """A reset frees hypercorn's stream slot, but a request already with a worker runs
    on: it still counts, so resetting cannot fan one connection out past
    h2_max_streams (REFUSED_STREAM beyond it)."""
    port, app = await served(nursery, h2_max_streams=2)
    client = await H2Client.connect(port)
    held = [client.request("/hold?committed") for _ in range(2)]
    await client.flush()
    await until(lambda: app.holding == 2)
    for stream_id in held:
        client.reset(stream_id)
    third = client.request("/third")
    await client.flush()
    await client.until(lambda events: third in client.resets())
    assert client.resets()[third] == h2.errors.ErrorCodes.REFUSED_STREAM
    assert app.calls == ["/hold", "/hold"]


async def test_streams_beyond_the_first_take_connection_slots(nursery):
    """max_connections counts an HTTP/2 connection's requests beyond its first: of 4
    slots, the connection holds one and the accept loop one (for the next client), so
    the connection runs 1 + 2 requests at once, and a fourth is refused."""
    port, app = await served(nursery, max_connections=4)
    client = await H2Client.connect(port)
    streams = [client.request("/hold") for _ in range(4)]
    await client.flush()
    await client.until(lambda events: streams[3] in client.resets())
    await until(lambda: app.holding == 3)
    assert client.resets() == {streams[3]: h2.errors.ErrorCodes.REFUSED_STREAM}


async def test_zero_window_costs_bounded_memory_and_send_timeout_ends_it(nursery):
    """A client granting no flow-control window: the app's sends wait (before, all 4 MiB
    were taken into hypercorn's buffer at once), and after send_timeout the stream is
    reset and the request cancelled."""
    port, app = await served(nursery, send_timeout=0.5)
    client = await H2Client.connect(port, window=0)
    stream_id = client.request("/big")
    await client.flush()
    with trio.fail_after(20):
        await app.ended.wait()
    assert app.sent <= 2 * CHUNK
    assert app.cancelled == 1
    await client.until(lambda events: stream_id in client.resets())
    assert client.resets()[stream_id] == h2.errors.ErrorCodes.CANCEL


@pytest.mark.parametrize(("method", "path", "extra", "status"), [
    (b"GET", b"/a b", (), 400),
    (b"GET", b"/a\tb", (), 400),
    (b"GET", b"/caf\xc3\xa9", (), 400),
    (b"GET", b"/ctl\x01", (), 400),
    (b"GE T", b"/m", (), 400),
    (b"G\xc3\x89T", b"/m", (), 400),
    (b"GET", b"no-slash", (), 400),
    (b"GET", b"/v", ((b"x-v", b"a\x01b"),), 400),
    (b"GET", b"/big", ((b"x-big", b"a" * (20 * 1024)),), 431),
], ids=["space", "tab", "non-ascii", "control", "method-space", "method-non-ascii",
        "not-origin-form", "value-control", "head-over-16k"])
async def test_malformed_heads_are_refused_per_stream(nursery, method, path, extra, status):
    """A head that would not make a valid HTTP/1.1 request line for the worker gets 400
    (431 over the HTTP/1.1 head limit) on its stream, is recorded, and never reaches the
    app; the connection serves on. Before, it went verbatim to the worker, or a
    non-ASCII byte ended the connection."""
    app = App()
    front_app = AsgiApp(app)
    port, _ = await start_front(nursery, front_app, Limits(h2c=True))
    client = await H2Client.connect(port)
    bad = client.request(path, method=method, extra=extra)
    await client.flush()
    got = await client.response(bad)
    good = client.request("/good")
    await client.flush()
    assert (got[0], await client.response(good)) == (status, (200, b"/good"))
    assert app.calls == ["/good"]
    assert front_app.refusals == [(method.decode("latin-1"), path, status)]


async def test_a_request_reset_while_queued_leaves_the_queue_and_never_reaches_a_worker(
        tmp_path, monkeypatch):
    """Through the whole proxy: the one worker busy (least-busy, one request at a time), a
    request queued behind it over h2c, then reset. It leaves the queue while the worker
    is still busy, and the worker never sees it."""
    gate, seen = tmp_path / "gate", tmp_path / "seen"
    monkeypatch.setenv("STANDIN_GATE", str(gate))
    monkeypatch.setenv("STANDIN_SEEN", str(seen))
    # (waiting longer for a worker than `until` waits, so only the reset can end the wait)
    config = config_for(workers=1, strategy="least-busy", h2c=True, rscript=str(STANDIN),
                        worker_wait_timeout=60)
    held = []
    async with run_faucet(config) as faucet, faucet.client() as client:
        dispatcher = faucet.proxy_mounts[0].dispatcher

        async def hold():
            held.append(await client.get("/hold"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await until(lambda: seen.exists() and seen.read_text() == "/hold\n")
            h2 = await H2Client.connect(int(faucet.url.rsplit(":", 1)[1]))
            stream_id = h2.request("/queued")
            await h2.flush()
            await until(lambda: dispatcher.queued() == 1)
            h2.reset(stream_id)
            await h2.flush()
            await until(lambda: dispatcher.queued() == 0)  # while /hold still holds it
            gate.touch()
    assert [response.status_code for response in held] == [200]
    assert seen.read_text() == "/hold\n"


def upgrade_request(client: H2Client, path: str) -> bytes:
    """An HTTP/1.1 GET asking to switch to h2c (RFC 7540 3.2), its settings from
    ``client``'s connection, which then expects the answer on stream 1."""
    settings = client.conn.initiate_upgrade_connection().decode()
    return (f"GET {path} HTTP/1.1\r\nHost: faucet\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            f"Upgrade: h2c\r\nHTTP2-Settings: {settings}\r\n\r\n").encode()


async def test_an_upgrade_to_h2c_is_answered_over_http2_when_h2c_is_on(nursery):
    port, app = await served(nursery)
    client = H2Client(await trio.open_tcp_stream("127.0.0.1", port))
    await client.stream.send_all(upgrade_request(client, "/upgraded"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += await client.stream.receive_some(65536)
    head, _, rest = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    client.events += client.conn.receive_data(rest)
    assert await client.response(1) == (200, b"/upgraded")
    assert app.calls == ["/upgraded"]


async def test_an_upgrade_to_h2c_is_plain_http_1_1_when_h2c_is_off(nursery):
    app = App()
    port, _ = await start_front(nursery, app, Limits(h2c=False))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(upgrade_request(H2Client(stream), "/plain"))
    answer = await read_all(stream)  # answered, then closed: what follows is not HTTP/1.1
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"/plain")
    assert b"connection: close" in answer.lower()


async def test_the_http2_preface_after_an_http_1_1_request_gets_505_even_with_h2c(nursery):
    """Prior knowledge means from the connection's first byte; later it is no HTTP/1.1."""
    port, app = await served(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
    await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert (await read_all(stream)).startswith(b"HTTP/1.1 505 ")
    assert app.calls == ["/first"]
