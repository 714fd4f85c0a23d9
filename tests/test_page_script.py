"""faucet.page_script: the reconnect script goes into a Shiny app's HTML pages."""

import gzip

from faucet.http1 import Response
from faucet.page_script import MAX_PAGE, TAG, add_script, page_headers, rewritable, script_body

PAGE = b"<!DOCTYPE html><html><head><title>t</title></HEAD>\n<body>hi</body></html>"


def response(status=200, kind=b"text/html; charset=UTF-8", encoding=None, length=100):
    headers = [(b"content-type", kind)]
    if encoding:
        headers.append((b"content-encoding", encoding))
    return Response(status, headers, length, False, True)


def test_only_html_pages_faucet_can_read_are_rewritten():
    assert rewritable(response())
    assert rewritable(response(encoding=b"gzip", length=None))  # chunked, compressed
    assert not rewritable(response(status=304))
    assert not rewritable(response(kind=b"application/javascript"))
    assert not rewritable(response(encoding=b"br"))
    assert not rewritable(response(length=MAX_PAGE + 1))


def test_the_tag_goes_before_the_first_head_end_of_a_plain_or_gzip_page():
    expected = PAGE.replace(b"</HEAD>", TAG + b"</HEAD>")
    assert add_script(PAGE, None) == expected
    assert add_script(gzip.compress(PAGE), b"gzip") == expected


def test_pages_without_a_head_or_with_bad_or_huge_gzip_are_left_alone():
    assert add_script(b"<html><body>no head</body></html>", None) is None
    assert add_script(b"not gzip at all", b"gzip") is None
    assert add_script(gzip.compress(PAGE)[:-8], b"gzip") is None  # truncated
    bomb = gzip.compress(b"<head></head>" + b" " * (MAX_PAGE + 1))
    assert add_script(bomb, b"gzip") is None


def test_a_rewritten_page_has_its_new_length_and_no_compression_or_chunking():
    headers = [(b"content-type", b"text/html"), (b"content-encoding", b"gzip"),
               (b"transfer-encoding", b"chunked"), (b"x-ua-compatible", b"IE=edge")]
    assert page_headers(headers, 1234) == [(b"content-type", b"text/html"),
                                           (b"x-ua-compatible", b"IE=edge"),
                                           (b"content-length", b"1234")]


def test_the_served_script_starts_with_its_settings():
    body = script_body({"heartbeatTimeout": 20000})
    assert body.startswith(b'window.FAUCET_RECONNECT = {"heartbeatTimeout": 20000};\n')
    assert b"Shiny.createSocket" in body
