"""faucet.page_script: the reconnect script goes into a Shiny app's HTML pages."""

from faucet.http.http1 import Response
from faucet.proxy.shiny.page_script import (
    MAX_PAGE,
    TAG,
    add_script,
    page_headers,
    page_request_headers,
    rewritable,
    script_body,
    script_tag,
)

PAGE = b"<!DOCTYPE html><html><head><title>t</title></HEAD>\n<body>hi</body></html>"


def response(status=200, kind=b"text/html; charset=UTF-8", encoding=None, length=100,
             extra=()):
    headers = [(b"content-type", kind), *extra]
    if encoding:
        headers.append((b"content-encoding", encoding))
    return Response(status, headers, length, False, True)


def test_only_uncompressed_html_pages_of_a_known_length_are_rewritten():
    assert rewritable(response())
    assert rewritable(response(encoding=b"identity"))
    assert not rewritable(response(status=304))
    assert not rewritable(response(kind=b"application/javascript"))
    assert not rewritable(response(encoding=b"gzip"))
    assert not rewritable(response(length=None))  # chunked or until close
    assert not rewritable(response(length=MAX_PAGE + 1))
    # a downloadHandler's HTML file is saved as the app made it
    assert not rewritable(response(extra=[(b"content-disposition",
                                           b'attachment; filename="report.html"')]))
    assert rewritable(response(extra=[(b"content-disposition", b"inline")]))


def test_a_page_load_asks_the_worker_for_an_uncompressed_page():
    headers = [(b"accept", b"text/html,*/*;q=0.8"), (b"accept-encoding", b"gzip, br")]
    assert page_request_headers(headers, "GET") == headers[:1]
    assert page_request_headers(headers, "POST") == headers
    assets = [(b"accept", b"*/*"), (b"accept-encoding", b"gzip")]
    assert page_request_headers(assets, "GET") == assets


def test_the_tag_goes_before_the_first_head_end():
    assert add_script(PAGE) == PAGE.replace(b"</HEAD>", TAG + b"</HEAD>")
    assert add_script(b"<html><body>no head</body></html>") is None


def test_the_tag_goes_at_the_real_end_of_the_head_not_into_a_string_or_comment():
    page = (b"<html><head><script>var s = '</head>';</script><!-- </head> -->"
            b"<title>a </head> b</title><STYLE>/* </head> */</STYLE></head><body></body>")
    assert add_script(page) == page.replace(b"</head><body>", TAG + b"</head><body>")
    assert add_script(b"<html><head><script>'</head>'") is None  # no real end: untouched


def test_a_strict_content_security_policy_gets_its_nonce_or_an_untouched_page():
    nonce = [(b"content-security-policy", b"default-src 'self'; script-src 'nonce-Ab+9/x=' "
              b"'strict-dynamic'")]
    assert script_tag(nonce) == b'<script nonce="Ab+9/x=" src="__faucet__/reconnect.js"></script>'
    assert script_tag([]) == TAG
    assert script_tag([(b"content-security-policy", b"img-src *")]) == TAG
    assert script_tag([(b"content-security-policy", b"script-src 'self' cdn.x")]) == TAG
    assert script_tag([(b"content-security-policy", b"default-src 'none'")]) is None
    assert script_tag([(b"content-security-policy", b"script-src 'sha256-abc='")]) is None


def test_a_rewritten_page_has_its_new_length():
    headers = [(b"content-type", b"text/html"), (b"content-length", b"10"),
               (b"x-ua-compatible", b"IE=edge"), (b"etag", b'"v1"')]
    assert page_headers(headers, 1234) == [(b"content-type", b"text/html"),
                                           (b"x-ua-compatible", b"IE=edge"),
                                           (b"etag", b'W/"v1"'),
                                           (b"content-length", b"1234")]


def test_the_served_script_starts_with_its_settings():
    body = script_body({"heartbeatTimeout": 20000})
    assert body.startswith(b'window.FAUCET_RECONNECT = {"heartbeatTimeout": 20000};\n')
    assert b"Shiny.createSocket" in body


def test_the_scripts_session_id_comes_from_a_cryptographic_generator():
    source = script_body({}).decode()
    random_id = source[source.index("function randomId"):source.index("function shinyUrl")]
    assert "getRandomValues" in random_id and "Math.random" not in random_id
