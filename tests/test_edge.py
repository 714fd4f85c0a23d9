"""The edge holds (issue 10): request-parsing attacks sent as raw bytes to faucet's front
door, each asserting both what faucet answered and exactly what the worker received.

The worker is tests/standin/recorder (no R): it logs every byte and every request it
parses; tests/edge_support.py reads that log and speaks raw HTTP/1.1 to faucet.
"""

import ipaddress
import json
import uuid

import httpx
import pytest
import trio

from faucet.config.settings import TelemetryConfig
from faucet.proxy.health import health
from faucet.proxy.shiny.sessions import SessionStatistics
from faucet.telemetry.recorder import TelemetryStatistics
from tests.edge_support import http, recorded_faucet
from tests.h2_client import H2Client

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD_LIMIT = 16 * 1024  # hypercorn's h11_max_incomplete_size, faucet's head limit


@pytest.fixture
async def edge(tmp_path, monkeypatch):
    async with recorded_faucet(tmp_path, monkeypatch) as edge:
        yield edge


def big_head(size: int) -> bytes:
    """A GET whose head is over ``size`` bytes, by one long header."""
    return http("GET /big HTTP/1.1", "Host: x", "X-Big: " + "a" * size)


# ------------------------------------------------------------------ request framing


async def test_connection_header_cannot_strip_content_length(edge):
    """`Connection: content-length` must not make faucet drop the framing header while
    still sending the body on: the worker would read the body as a second request
    (smuggling), and that request's answer would wait on the pooled connection for the
    next client."""
    attack = http("POST /upload HTTP/1.1", "Host: x", "Connection: content-length",
                  f"Content-Length: {len(SMUGGLED)}", body=SMUGGLED)
    reply = await edge.exchange(attack)
    follow_up = await edge.exchange(http("GET /mine HTTP/1.1", "Host: y"))  # another client
    assert {"worker got": edge.recording.summaries(),
            "attacker got": (reply.status, reply.body),
            "next client got": (follow_up.status, follow_up.body)} == {
        "worker got": [("POST", "/upload", "content-length", SMUGGLED),
                       ("GET", "/mine", "none", b"")],
        "attacker got": (200, b"POST /upload"),
        "next client got": (200, b"GET /mine")}


async def test_content_length_with_transfer_encoding_is_refused(edge):
    """A request framed two ways (CL.TE / TE.CL desync) is refused with 400 and never
    forwarded: front and worker could disagree on where it ends."""
    body = b"0\r\n\r\n" + SMUGGLED
    reply = await edge.exchange(http(
        "POST /both HTTP/1.1", "Host: x", f"Content-Length: {len(body)}",
        "Transfer-Encoding: chunked", body=body))
    assert edge.recording.summaries() == []
    assert reply.status == 400
    assert edge.recording.raw() == b""


@pytest.mark.parametrize("content_length", ["5, 6", "5\r\nContent-Length: 6"],
                         ids=["list", "repeated"])
async def test_conflicting_content_lengths_are_refused(edge, content_length):
    """Two different Content-Length values: no length can be trusted, so 400 and nothing
    forwarded."""
    reply = await edge.exchange(http("POST /two HTTP/1.1", "Host: x",
                                     f"Content-Length: {content_length}", body=b"hello!"))
    assert reply.status == 400
    assert edge.recording.raw() == b""


@pytest.mark.parametrize("chunks", [
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"1" * 21 + b"\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
], ids=["bad-size", "21-hex-digits", "bad-second-chunk"])
async def test_malformed_chunked_body_is_400(edge, chunks):
    """A chunked body faucet cannot parse is the client's error (400, not 500), and no
    complete request reaches the worker."""
    reply = await edge.exchange(http("POST /chunks HTTP/1.1", "Host: x",
                                     "Transfer-Encoding: chunked", body=chunks))
    assert edge.recording.requests() == []
    assert reply.status == 400, reply


async def test_a_malformed_body_is_recorded_as_the_clients_400(tmp_path, monkeypatch, sink,
                                                              caplog):
    """Telemetry and the access log say what the client got (400), not 499, and name no
    worker: none received a complete request."""
    caplog.set_level("INFO", logger="faucet.access")
    async with recorded_faucet(tmp_path, monkeypatch,
                               telemetry=TelemetryConfig(sink="memory")) as edge:
        reply = await edge.exchange(http("POST /up HTTP/1.1", "Host: x",
                                         "Transfer-Encoding: chunked",
                                         body=b"1" * 21 + b"\r\nhello\r\n0\r\n\r\n"))
        assert reply.status == 400
    (event,) = sink.events
    assert (event.status, event.worker_id, event.target) == (400, None, None)
    (access,) = [r.getMessage() for r in caplog.records if r.name == "faucet.access"]
    assert " 400 " in access


async def test_absurd_content_length_is_refused_before_forwarding(edge):
    """A 20-digit Content-Length is refused (400 or 413) before anything is sent to the
    worker, instead of opening an upstream request that can never complete."""
    reply = await edge.exchange(http("POST /huge HTTP/1.1", "Host: x",
                                     "Content-Length: 99999999999999999999", body=b"hello"))
    assert edge.recording.raw() == b""
    assert reply.status in (400, 413), reply


async def test_valid_chunked_body_is_reframed_once(edge):
    """A valid chunked request reaches the worker whole, framed one way only (chunked or
    Content-Length, never both, never neither)."""
    chunks = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
    reply = await edge.exchange(http("POST /chunked HTTP/1.1", "Host: x",
                                     "Transfer-Encoding: chunked", body=chunks))
    assert (reply.status, reply.body) == (200, b"POST /chunked")
    (received,) = edge.recording.requests()
    assert received.body == b"hello, world"
    assert received.framing in ("chunked", "content-length")
    assert len(received.values("content-length") + received.values("transfer-encoding")) == 1


@pytest.mark.parametrize("attack", [
    b"POST /lf HTTP/1.1\nHost: x\nContent-Length: %d\n\n" % len(SMUGGLED) + SMUGGLED,
    http("POST /fold HTTP/1.1", "Host: x", "X-Fold: a", " Transfer-Encoding: chunked",
         f"Content-Length: {len(SMUGGLED)}", body=SMUGGLED),
    http("POST /te HTTP/1.1", "Host: x", "Transfer-Encoding: chunked, identity",
         body=b"0\r\n\r\n" + SMUGGLED),
    http("POST /space HTTP/1.1", "Host: x", f"Content-Length : {len(SMUGGLED)}",
         body=SMUGGLED),
    http("SMUGGLE /x HTTP/1.1", "Host: x"),
    http("GET /nohost HTTP/1.1"),
    http("GET /twohosts HTTP/1.1", "Host: x", "Host: y"),
    http("POST /upgrade HTTP/1.1", "Host: x", "Connection: Upgrade", "Upgrade: foo",
         f"Content-Length: {len(SMUGGLED)}", body=SMUGGLED),
], ids=["bare-lf", "obs-fold", "te-not-chunked-last", "space-before-colon",
        "unknown-method", "no-host", "two-hosts", "body-behind-upgrade"])
async def test_heads_two_parsers_could_read_two_ways_are_refused(edge, attack):
    """What the front door's parser refuses (llhttp, strict), each shape a parser
    elsewhere could take for a different request: 400, no byte reaches the worker, and
    faucet serves the next client."""
    reply = await edge.exchange(attack)
    follow_up = await edge.exchange(http("GET /next HTTP/1.1", "Host: x"))
    assert {"attacker got": reply.status,
            "worker's first bytes": edge.recording.raw()[:len(b"GET /next ")],
            "worker got": edge.recording.summaries(),
            "next client got": (follow_up.status, follow_up.body)} == {
        "attacker got": 400, "worker's first bytes": b"GET /next ",
        "worker got": [("GET", "/next", "none", b"")], "next client got": (200, b"GET /next")}


async def test_malformed_h2_heads_reach_no_worker_and_the_connection_serves_on(tmp_path,
                                                                            monkeypatch):
    """HTTP/2 heads that cannot become a worker's request line are refused per stream;
    the worker reads nothing of them, and the same connection's next request reaches it."""
    async with recorded_faucet(tmp_path, monkeypatch, h2c=True) as edge:
        client = await H2Client.connect(int(edge.faucet.url.rsplit(":", 1)[1]))
        bad = [client.request(path) for path in (b"/a b", b"/tab\tx", "/caf\u00e9".encode())]
        bad.append(client.request(b"/x", method=b"G T"))
        good = client.request(b"/fine")
        await client.flush()
        statuses = [(await client.response(stream_id))[0] for stream_id in bad]
        assert statuses == [400] * 4
        assert await client.response(good) == (200, b"GET /fine")
    assert edge.recording.summaries() == [("GET", "/fine", "none", b"")]


async def test_h2_streamed_post_body_reaches_worker(tmp_path, monkeypatch):
    """An HTTP/2 POST streamed without content-length keeps its body on the way to the
    worker (HTTP/2 frames the body itself; the upstream HTTP/1.1 request must frame it)."""
    async def pieces():
        yield b"part-one/"
        yield b"part-two"

    async with recorded_faucet(tmp_path, monkeypatch, h2c=True) as edge, \
            httpx.AsyncClient(base_url=edge.faucet.url, http1=False, http2=True,
                              timeout=10) as client:
        response = await client.post("/h2", content=pieces())
    assert response.http_version == "HTTP/2"
    assert (response.status_code, response.text) == (200, "POST /h2")
    (received,) = edge.recording.requests()
    assert (received.framing, received.body) in (
        ("chunked", b"part-one/part-two"), ("content-length", b"part-one/part-two"))


# ------------------------------------------------------------------ upstream connections


async def test_head_response_body_does_not_poison_the_pool(edge):
    """plumber answers HEAD 404/405 with a body anyway. Those unread bytes must not stay
    on a pooled connection, where they would be read as the next request's response
    (502, or a replayed DELETE)."""
    async with edge.connect() as client:
        await client.send(http("HEAD /headbody HTTP/1.1", "Host: x"))
        head = await client.reply(head=True)
        await client.send(http("DELETE /item HTTP/1.1", "Host: x"))
        delete = await client.reply()
    assert head.status == 404
    assert [r[:2] for r in edge.recording.summaries()] == [
        ("HEAD", "/headbody"), ("DELETE", "/item")]
    assert (delete.status, delete.body) == (200, b"DELETE /item")


@pytest.mark.parametrize("body", [b"money", b""], ids=["with-body", "empty-body"])
async def test_post_is_never_replayed(edge, body):
    """A POST whose upstream connection breaks after it was sent may have been acted on:
    the client gets 502 and the worker sees it once, even on a pooled connection."""
    warm = await edge.exchange(http("GET /warm HTTP/1.1", "Host: x"))
    assert warm.status == 200  # the upstream connection now waits in the pool
    reply = await edge.exchange(http("POST /dropme HTTP/1.1", "Host: x",
                                     f"Content-Length: {len(body)}", body=body))
    assert [r[:2] for r in edge.recording.summaries()] == [
        ("GET", "/warm"), ("POST", "/dropme")]
    assert reply.status == 502


async def test_get_is_retried_on_a_stale_pooled_connection(edge):
    """The worker closed an idle keep-alive connection without saying so: a GET that meets
    it is retried on a new connection, so the client never sees the stale one."""
    first = await edge.exchange(http("GET /closeafter HTTP/1.1", "Host: x"))
    again = await edge.exchange(http("GET /again HTTP/1.1", "Host: x"))
    assert (first.status, again.status, again.body) == (200, 200, b"GET /again")
    assert [r[:2] for r in edge.recording.summaries()] == [
        ("GET", "/closeafter"), ("GET", "/again")]


# ------------------------------------------------------------------ headers


async def test_underscore_header_names_never_reach_worker(edge):
    """Header names with underscores are dropped: R (like CGI) maps `X_Forwarded_For`
    and `X-Forwarded-For` to the same HTTP_X_FORWARDED_FOR, so they would spoof the
    headers faucet itself sets."""
    reply = await edge.exchange(http(
        "GET /who HTTP/1.1", "Host: x", "X_Forwarded_For: 6.6.6.6",
        "Faucet_Request_Uuid: evil", "X_Real_IP: 6.6.6.6", "Faucet-Request-Uuid: forged",
        "X-Forwarded-Prefix: /forged"))
    assert reply.status == 200
    (received,) = edge.recording.requests()
    assert [name for name, _ in received.headers if "_" in name] == []
    assert received.values("x-forwarded-for") == ["127.0.0.1"]
    (request_id,) = received.values("faucet-request-uuid")  # faucet's own, only
    uuid.UUID(request_id)
    assert received.values("x-forwarded-prefix") == []


async def test_forwarded_for_client_is_the_trusted_proxys_entry(tmp_path, monkeypatch, sink,
                                                                 caplog):
    """Behind a proxy (--ip-from x-forwarded-for) the client is the rightmost entry, the
    one the trusted proxy appended: the leftmost is whatever the client typed. The worker
    sees the chain with faucet's own peer appended."""
    caplog.set_level("INFO", logger="faucet.access")
    async with recorded_faucet(tmp_path, monkeypatch, ip_from="x-forwarded-for",
                               telemetry=TelemetryConfig(sink="memory")) as edge:
        reply = await edge.exchange(http("GET /who HTTP/1.1", "Host: x",
                                         "X-Forwarded-For: 6.6.6.6, 10.0.0.9"))
        assert reply.status == 200
        (received,) = edge.recording.requests()
        assert received.values("x-forwarded-for") == ["6.6.6.6, 10.0.0.9, 127.0.0.1"]
    (event,) = sink.events  # flushed when faucet stops
    assert event.ip_addr == ipaddress.ip_address("10.0.0.9")
    access = [r.getMessage() for r in caplog.records if r.name == "faucet.access"]
    assert len(access) == 1 and "10.0.0.9" in access[0] and "6.6.6.6" not in access[0]


# ------------------------------------------------------------------ head size


@pytest.mark.parametrize("size", [HEAD_LIMIT + 1024, 60_000])
async def test_oversized_head_in_one_write_is_431(edge, size):
    """A head over 16 KiB is refused with 431 even when it arrives whole in one read
    (faucet reads 64 KiB at a time, so a 60 KB head does), and nothing is forwarded."""
    reply = await edge.exchange(big_head(size))
    assert edge.recording.raw() == b""
    assert reply.status == 431, reply


async def test_oversized_head_in_pieces_is_431(edge):
    """The same head trickled in 1 KiB writes is refused with 431 too (the writes stop
    once faucet has answered and closed)."""
    head = big_head(60_000)
    async with edge.connect() as client:
        for start in range(0, len(head), 1024):
            if not await client.send(head[start:start + 1024]):
                break  # faucet has answered and closed
        reply = await client.reply()
    assert edge.recording.raw() == b""
    assert reply.status == 431, reply


# ------------------------------------------------------------------ slow and vanished clients


async def test_a_client_that_vanishes_mid_body_never_reaches_the_worker(edge):
    """Half a body, then the connection drops: a body that fits proxy_buffer_size is read
    before a worker is claimed, so no byte of it reaches the worker (before, the head and
    the half body did, and R waited on the rest); the next client is served."""
    async with edge.connect() as client:
        await client.send(http("POST /up HTTP/1.1", "Host: x", "Content-Length: 1000",
                               body=b"x" * 10))
    follow_up = await edge.exchange(http("GET /next HTTP/1.1", "Host: y"))
    assert (follow_up.status, follow_up.body) == (200, b"GET /next")
    assert edge.recording.summaries() == [("GET", "/next", "none", b"")]
    assert b"POST /up" not in edge.recording.raw()


async def test_a_stalled_upload_gets_408_and_never_reaches_the_worker(tmp_path, monkeypatch):
    async with recorded_faucet(tmp_path, monkeypatch, client_body_timeout=0.3) as edge:
        reply = await edge.exchange(http("POST /up HTTP/1.1", "Host: x", "Content-Length: 100",
                                         body=b"x" * 10))
        assert reply.status == 408
        assert edge.recording.raw() == b""


async def test_a_trickled_head_gets_408_and_never_reaches_the_worker(tmp_path, monkeypatch):
    async with recorded_faucet(tmp_path, monkeypatch, head_timeout=0.3) as edge:
        async with edge.connect() as client:
            await client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            for _ in range(3):
                await trio.sleep(0.05)  # the trickle is the attack, not synchronisation
                await client.send(b"X")
            reply = await client.reply()
        assert reply.status == 408
        assert edge.recording.raw() == b""



# ------------------------------------------------------------------ faucet's own endpoints


HEALTH = "GET /__faucet__/health HTTP/1.1"
INTERNET = "203.0.113.9"


@pytest.mark.parametrize(("headers", "trusted"), [
    ([f"X-Forwarded-For: {INTERNET}"], False),  # nginx on this host, a client out there
    ([f"X-Forwarded-For: 127.0.0.1, {INTERNET}"], False),  # the client's own claim left
    ([], False),  # no header: faucet cannot tell who it is
    (["X-Forwarded-For: nonsense"], False),
    (["X-Forwarded-For: 127.0.0.1"], True),  # a check on the proxy's host
], ids=["internet", "forged-left", "missing", "bad", "local"])
async def test_health_details_follow_the_client_address_behind_a_local_proxy(
        tmp_path, monkeypatch, headers, trusted):
    """Behind nginx on the same host every TCP peer is loopback: with ``--ip-from
    x-forwarded-for`` the address faucet uses everywhere else decides who sees pids and
    ports, and the metrics (issue 18 round two, item 14: every client saw them)."""
    async with recorded_faucet(tmp_path, monkeypatch, ip_from="x-forwarded-for") as edge:
        health = await edge.exchange(http(HEALTH, "Host: x", *headers))
        metrics = await edge.exchange(http("GET /__faucet__/metrics HTTP/1.1", "Host: x",
                                           *headers))
    worker = json.loads(health.body)["workers"][0]
    assert (health.status, "pid" in worker, "port" in worker) == (200, trusted, trusted)
    assert metrics.status == (200 if trusted else 403)
    assert edge.recording.requests() == []


@pytest.mark.parametrize("target", ["/%5F%5Ffaucet%5F%5F/health", "/__faucet__%2Fhealth",
                                    "/%5f%5ffaucet%5f%5f/metrics"])
async def test_faucet_endpoints_match_the_raw_path_only(edge, target):
    """Faucet's endpoints match the path as sent, as routes do: an encoded spelling is an
    ordinary path for the app, so a front proxy's rule on ``/__faucet__/`` and faucet
    agree on what is faucet's (before, one decoding made these faucet's health)."""
    reply = await edge.exchange(http(f"GET {target} HTTP/1.1", "Host: x"))
    assert (reply.status, reply.body) == (200, f"GET {target}".encode())
    assert [r.target for r in edge.recording.requests()] == [target]


def test_error_texts_are_details_only_trusted_clients_see():
    """A sink's last error names the database's host, port and role, a reload's names
    files: with ``health_details`` off for this client, health says there was one and
    when, not what (before: shown even with ``health_details = none``)."""
    stats = TelemetryStatistics(
        queued=0, pending=0, written=0, dropped=0, failed=1, sink_available=False,
        sink_status="unavailable",
        last_error='connection to "db.internal" (10.0.0.5), port 5432 failed: role "faucet"',
        last_error_at="2025-01-01T00:00:00+00:00")
    reload = {"reloads": 1, "last_error": "/srv/app/plumber.R: parse error"}
    shown = {details: health([], stats, {}, SessionStatistics(0, 0, 0), reload, details=details)[1]
             for details in (True, False)}
    assert "db.internal" in shown[True]["telemetry"]["last_error"]
    assert "/srv/app" in shown[True]["reload"]["last_error"]
    hidden = json.dumps(shown[False])
    assert "db.internal" not in hidden and "5432" not in hidden and "/srv/app" not in hidden
    assert shown[False]["telemetry"]["last_error_at"] == "2025-01-01T00:00:00+00:00"
