"""The front door's HTTP/1.1 wire format, without sockets: what the request parser
accepts and refuses, and how responses are framed."""

from __future__ import annotations

import pytest

from faucet.edge.http11 import (
    END,
    BadRequest,
    InvalidResponse,
    RequestHead,
    RequestParser,
    ResponseFramer,
)

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"


def parse(data: bytes) -> list:
    parser = RequestParser()
    parser.feed(data)
    return list(parser.events)


def test_a_request_is_a_head_then_its_end_with_names_lower_cased():
    head, end = parse(GET)
    assert isinstance(head, RequestHead) and end is END
    assert (head.method, head.target, head.http_version) == (b"GET", b"/a?b=1", "1.1")
    assert head.headers == [(b"host", b"x"), (b"user-agent", b"t")]
    assert head.keep_alive and not head.upgrade and not head.has_body


def test_bodies_arrive_in_pieces_fed_in_pieces_and_pipelined_requests_follow():
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    parser.feed(b"cde" + GET)
    events = list(parser.events)
    assert events[0].has_body
    assert events[1:4] == [b"ab", b"cde", END]
    assert events[4].target == b"/a?b=1" and events[5] is END


def test_chunked_bodies_are_decoded():
    body = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    events = parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert b"".join(e for e in events[1:] if isinstance(e, bytes)) == b"abcde"
    assert events[-1] is END


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
], ids=["cl+te", "two lengths", "signed length", "gzip coding", "bad chunk size", "obs-fold",
        "space before colon", "nul in value", "tab in target", "no host", "two hosts",
        "version 1.2"])
def test_ambiguous_or_malformed_requests_are_bad_requests(data):
    with pytest.raises(BadRequest) as caught:
        parse(data)
    assert caught.value.status == 400


def test_http_1_0_needs_no_host_and_is_not_kept_alive():
    (head, end) = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert head.http_version == "1.0" and not head.keep_alive


def test_an_upgrade_stops_parsing_and_keeps_what_follows_its_head_for_the_new_protocol():
    parser = RequestParser()
    parser.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n\x81\x05hello")
    assert parser.upgraded and parser.events[0].upgrade
    assert parser.upgrade_rest == b"\x81\x05hello"
    parser.feed(b"more")  # no longer HTTP: ignored here
    assert parser.upgrade_rest == b"\x81\x05hello"


def test_expect_100_continue_is_noted_on_http_1_1_only():
    data = b"POST / HTTP/1.%d\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
    assert parse(data % 1)[0].expects_continue
    assert not parse(data % 0)[0].expects_continue


def frame(status=200, headers=(), method=b"GET", version="1.1", keep_alive=True,
          body=(b"hello",)) -> tuple[bytes, ResponseFramer]:
    framer = ResponseFramer()
    out = framer.head(status, b"OK", list(headers), method, version, keep_alive)
    for piece in body:
        out += framer.body(piece)
    return out + framer.end(), framer


def test_a_declared_length_is_kept_and_checked():
    out, framer = frame(headers=[(b"content-length", b"5")])
    assert out == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello" and framer.keep_alive
    with pytest.raises(InvalidResponse):
        frame(headers=[(b"content-length", b"4")])
    with pytest.raises(InvalidResponse):
        frame(headers=[(b"content-length", b"6")])


def test_no_length_is_chunked_to_http_1_1_and_ends_with_the_connection_for_http_1_0():
    out, framer = frame(body=(b"hel", b"lo"))
    assert out == (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                   b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
    out, framer = frame(version="1.0")
    assert out == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello"
    assert not framer.keep_alive
    out, framer = frame(version="1.0", headers=[(b"content-length", b"5")])
    assert out.endswith(b"connection: close\r\n\r\nhello") and not framer.keep_alive


def test_head_204_and_304_answers_carry_no_body_but_keep_their_headers():
    out, _ = frame(method=b"HEAD", headers=[(b"content-length", b"5")])
    assert out == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
    out, _ = frame(status=204, body=())
    assert out == b"HTTP/1.1 204 OK\r\n\r\n"


def test_connection_close_is_written_once_when_either_side_ends_the_connection():
    out, framer = frame(headers=[(b"content-length", b"5")], keep_alive=False)
    assert out.count(b"connection: close") == 1 and not framer.keep_alive
    out, framer = frame(headers=[(b"Connection", b"close"), (b"content-length", b"5")])
    assert out.count(b"connection: close") == 1 and not framer.keep_alive


@pytest.mark.parametrize("header", [
    (b"bad name", b"v"), (b"x", b"a\r\nb"), (b"x", b" padded"), (b"x", b"nul\x00"),
])
def test_a_header_that_cannot_be_sent_is_an_invalid_response(header):
    with pytest.raises(InvalidResponse):
        frame(headers=[header])
