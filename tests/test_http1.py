"""The hand-written HTTP/1.1 client framing (pure)."""

import pytest

from faucet.http.http1 import (
    LAST_CHUNK,
    ChunkedDecoder,
    UpstreamProtocolError,
    encode_chunk,
    encode_head,
    parse_head,
)


def test_encode_head():
    head = encode_head("GET", b"/x?q=1", [(b"host", b"h"), (b"x-a", b"1")])
    assert head == b"GET /x?q=1 HTTP/1.1\r\nhost: h\r\nx-a: 1\r\n\r\n"


def test_parse_head_waits_for_the_whole_head_and_keeps_the_rest():
    buffer = bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")
    assert parse_head(buffer, "GET") is None
    buffer += b"X-Y:  spaced \r\n\r\nhello"
    response = parse_head(buffer, "GET")
    assert response.status == 200 and response.length == 5 and response.keep_alive
    assert response.headers == [(b"content-length", b"5"), (b"x-y", b"spaced")]
    assert buffer == b"hello"


@pytest.mark.parametrize(("head", "method", "length", "chunked", "keep_alive"), [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", None, True, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", "GET", 3, False,
     False),
    (b"HTTP/1.1 200 OK\r\n\r\n", "GET", None, False, False),  # until close
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD", 0, False, True),
    (b"HTTP/1.1 304 Not Modified\r\n\r\n", "GET", 0, False, True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", 0, False, True),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", 1, False, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", "GET", 1,
     False, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", None, False, False),
])
def test_body_framing(head, method, length, chunked, keep_alive):
    response = parse_head(bytearray(head), method)
    assert (response.length, response.chunked, response.keep_alive) == (
        length, chunked, keep_alive)


@pytest.mark.parametrize("head", [
    b"SPDY/3 200 OK\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
])
def test_invalid_heads_are_errors(head):
    with pytest.raises(UpstreamProtocolError):
        parse_head(bytearray(head), "GET")


def test_oversized_head_is_an_error():
    with pytest.raises(UpstreamProtocolError):
        parse_head(bytearray(b"HTTP/1.1 200 OK\r\n" + b"x" * 70000), "GET")


def test_chunked_round_trip_fed_byte_by_byte():
    wire = encode_chunk(b"hello ") + b"5;ext=1\r\nworld\r\n" + LAST_CHUNK
    decoder = ChunkedDecoder()
    buffer = bytearray()
    out = b""
    for byte in wire:
        buffer.append(byte)
        out += decoder.feed(buffer)
    assert out == b"hello world" and decoder.done and not buffer


def test_chunked_trailers_and_errors():
    decoder = ChunkedDecoder()
    buffer = bytearray(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT")
    assert decoder.feed(buffer) == b"abc" and decoder.done and buffer == b"NEXT"
    with pytest.raises(UpstreamProtocolError):
        ChunkedDecoder().feed(bytearray(b"zz\r\n"))
    with pytest.raises(UpstreamProtocolError):
        ChunkedDecoder().feed(bytearray(b"1\r\nab\r\n"))
