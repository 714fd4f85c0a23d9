"""Every answer faucet gives is one access line and one telemetry event (issue 16 item 1),
its own refusals at the front door included; only a connection whose request line never
parsed goes unrecorded, with a rate-limited log line instead."""

import logging

import pytest

from faucet.config.settings import TelemetryConfig
from tests.edge_support import http, recorded_faucet

HEAD_LIMIT = 16 * 1024

REFUSALS = {  # what the client sends: the status it gets, and the target it is recorded at
    "over max_body_size": (http("POST /up HTTP/1.1", "Host: x",
                                f"Content-Length: {10 ** 12}"), 413, "/up"),
    "a whole head over the limit": (http("GET /big HTTP/1.1", "Host: x",
                                         "X-Big: " + "a" * HEAD_LIMIT), 431, "/big"),
    "an unfinished head over the limit": (b"GET /trickle HTTP/1.1\r\nX-Big: "
                                          + b"a" * (HEAD_LIMIT + 10), 431, "/trickle"),
    "Content-Length with Transfer-Encoding": (http(
        "POST /both HTTP/1.1", "Host: x", "Content-Length: 5",
        "Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400, "/both"),
    "two Content-Lengths": (http("POST /two?x=1 HTTP/1.1", "Host: x", "Content-Length: 5",
                                 "Content-Length: 6", body=b"hello!"), 400, "/two"),
}


@pytest.fixture
def access(caplog):
    caplog.set_level(logging.INFO, logger="faucet.access")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "faucet.access"]


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_a_refusal_at_the_front_door_is_recorded(case, tmp_path, monkeypatch, sink,
                                                       access):
    sent, status, path = REFUSALS[case]
    async with recorded_faucet(tmp_path, monkeypatch,
                               telemetry=TelemetryConfig(sink="memory")) as edge:
        reply = await edge.exchange(sent)
        assert reply.status == status
    (event,) = sink.events
    assert (event.status, event.path, event.worker_id, event.target) == (
        status, path, None, None)
    assert event.ip_addr is not None and event.method in ("GET", "POST")
    (line,) = access()
    assert f" {status} " in line and path in line


async def test_a_missing_client_ip_header_is_recorded_with_the_peer(tmp_path, monkeypatch,
                                                                   sink, access):
    """A proxy in front that forgets X-Forwarded-For: every user gets 400, and the log
    and telemetry say so."""
    async with recorded_faucet(tmp_path, monkeypatch, ip_from="x-forwarded-for",
                               telemetry=TelemetryConfig(sink="memory")) as edge:
        reply = await edge.exchange(http("GET /page HTTP/1.1", "Host: x"))
        assert reply.status == 400
    (event,) = sink.events
    assert (event.status, event.path, str(event.ip_addr), event.target) == (
        400, "/page", "127.0.0.1", None)
    assert " 400 " in access()[0]


async def test_a_head_that_times_out_is_recorded_once_its_request_line_came(
        tmp_path, monkeypatch, sink):
    async with recorded_faucet(tmp_path, monkeypatch, head_timeout=0.2,
                               telemetry=TelemetryConfig(sink="memory")) as edge:
        async with edge.connect() as client:
            await client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            assert (await client.reply()).status == 408
    (event,) = sink.events
    assert (event.status, event.path, event.target) == (408, "/slow", None)


async def test_bytes_that_are_no_request_line_are_logged_not_recorded(tmp_path, monkeypatch,
                                                                      sink, caplog):
    caplog.set_level(logging.ERROR, logger="faucet.front")
    async with recorded_faucet(tmp_path, monkeypatch,
                               telemetry=TelemetryConfig(sink="memory")) as edge:
        for _ in range(3):
            reply = await edge.exchange(b"\x16\x03\x01 not http at all\r\n\r\n")
            assert reply.status == 400
    assert sink.events == []
    lines = [r.getMessage() for r in caplog.records if "request line" in r.getMessage()]
    assert len(lines) == 1 and "not recorded" in lines[0]  # one line per period, counted
