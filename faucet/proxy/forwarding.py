"""HTTP forwarding: an admitted request's body, its exchange with the worker, and the
response back to the client.

502 when the worker breaks the exchange before answering, 504 when it does not answer
within ``response_timeout``. A slow client never holds a worker: the body is read up to
``proxy_buffer_size`` before a worker is claimed, and a response is read whole (or into a
spool) before the client has taken it.
"""

from __future__ import annotations

import contextlib
import time

import trio
from attrs import frozen

from faucet.config.settings import Config
from faucet.errors import BadRequestBody, ResponseRejected
from faucet.http.asgi import ClientGone, respond
from faucet.http.headers import response_headers, upstream_headers
from faucet.http.http1 import encode_head
from faucet.proxy.admission import Admitted, Arrival
from faucet.proxy.request_body import RequestBody
from faucet.proxy.shiny.page_script import page_request_headers, with_script
from faucet.proxy.shiny.sessions import with_session_id
from faucet.proxy.spool import ResponseSpool, SpoolBudget
from faucet.proxy.upstream import UpstreamError


@frozen
class ForwardingSettings:
    """What forwarding reads of the settings (sizes in bytes, times in seconds)."""

    trust_forwarded: bool  # X-Forwarded-* from the client go on (ip_from is not "client")
    buffer_size: int  # proxy_buffer_size
    spool_size: int  # max_spool_size
    spool_total: int  # max_spool_total
    client_body_timeout: float
    response_timeout: float

    @classmethod
    def of(cls, config: Config) -> ForwardingSettings:
        return cls(config.ip_from != "client", int(config.proxy_buffer_size),
                   int(config.max_spool_size), int(config.max_spool_total),
                   config.client_body_timeout, config.response_timeout)


class Forwarder:
    """Forwards admitted HTTP requests to their workers."""

    def __init__(self, settings: ForwardingSettings):
        self.settings = settings
        self.spool_budget = SpoolBudget(settings.spool_total)  # all responses' files

    async def buffer_body(self, arrival: Arrival, receive) -> RequestBody | None:
        """The request body read up to ``proxy_buffer_size`` before a worker is claimed,
        so a slow upload does not hold one: a RequestBody, or None without a body.
        BadRequestBody or ClientGone when the client fails (the caller answers)."""
        fields = arrival.fields
        unframed = arrival.request.http_version == "2" and fields.content_length is None
        if not (fields.has_body or unframed):
            return None
        body = RequestBody(receive, self.settings.client_body_timeout)
        await body.prefetch(self.settings.buffer_size)
        if body.complete:  # goes on with its length, whatever the client's framing
            fields.chunked = False
            fields.has_body = body.size > 0
            fields.content_length = (str(body.size).encode() if body.size or not unframed
                                     else None)
            return body if body.size else None
        if fields.content_length is None:
            fields.chunked = True  # HTTP/2 frames bodies itself; HTTP/1.1 needs chunks
        return body

    def headers_for(self, arrival: Arrival) -> list[tuple[bytes, bytes]]:
        """The headers the worker receives for a request (a Shiny app's with the session's
        FAUCET_SESSION_ID, and a page it asks for uncompressed: faucet.proxy.shiny)."""
        request = arrival.request
        headers = upstream_headers(arrival.fields, scheme=request.scheme, peer=request.peer,
                                   trust_forwarded=self.settings.trust_forwarded,
                                   prefix=arrival.prefix,
                                   request_uuid=arrival.draft.request_uuid)
        if arrival.mount.session_app:
            headers = page_request_headers(
                with_session_id(headers, arrival.placement.session_id), request.method)
        return headers

    async def forward(self, admitted: Admitted, body: RequestBody | None, send) -> int:
        """Send the request to the admitted backend and stream its response back; the
        status sent. The backend's slot is released as soon as the worker has answered
        completely, before the client has read the answer: a response up to
        ``proxy_buffer_size`` is read whole first, a longer one goes through a spool of
        that much memory and a file of up to ``max_spool_size`` (all of them together up
        to ``max_spool_total``), so a slow reader holds a worker only for what exceeds
        those; a failing disk makes the worker wait on the client too."""
        arrival = admitted.arrival
        method = arrival.request.method
        head = encode_head(method, arrival.target, self.headers_for(arrival))
        pool = admitted.generation.pools[admitted.backend.index]
        timeout = self.settings.response_timeout
        with trio.move_on_after(timeout) as clock:
            if body is not None:
                body.pause_while_reading(clock, timeout)
            try:
                conn, response = await pool.exchange(
                    head, method, body.next_piece if body is not None else None,
                    arrival.fields.chunked, _committed(arrival.request))
                # A Shiny page gets the reconnect script: (response, whole body) or None.
                page = await with_script(response, conn) if arrival.mount.session_app else None
            except UpstreamError as exc:
                return await respond(send, 502, f"Bad Gateway: {exc}\n".encode())
        if clock.cancelled_caught:
            admitted.backend.note_timeout()
            return await respond(send, 504, b"Gateway Timeout: the worker did not answer within "
                                 + f"{timeout:g}s\n".encode())
        admitted.backend.note_answer()
        if page is not None:
            response = page[0]
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": response_headers(response.headers)
                        + admitted.sticky_cookie()})
            if page is not None or (response.length is not None
                                    and response.length <= self.settings.buffer_size):
                data = page[1] if page is not None else await conn.read_body()
                _done(pool, conn, admitted)
                conn = None
                await send({"type": "http.response.body", "body": data, "more_body": False})
            else:
                conn, pumped = None, conn  # the pump owns it now
                await self._pump(pool, pumped, admitted, send)
        except ResponseRejected:
            return 502  # the front answered it: the worker's head is not valid HTTP
        finally:
            if conn is not None:
                pool.put_back(conn)  # closes it: the exchange did not complete
        return response.status

    async def _pump(self, pool, conn, admitted: Admitted, send) -> None:
        """Relay a long or open-ended response body through a ResponseSpool: one task
        reads the worker (and frees it once the body is complete), the other writes to
        the client at the client's pace."""
        spool = ResponseSpool(self.settings.buffer_size, self.settings.spool_size,
                              self.spool_budget)

        async def read_worker() -> None:
            try:
                while chunk := await conn.body_chunk():
                    await spool.put(chunk)
            except BaseException:
                pool.put_back(conn)  # closes it: the exchange did not complete
                raise
            spool.close()
            _done(pool, conn, admitted)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_worker)
                while chunk := await spool.get():
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
        finally:
            await spool.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _committed(request):
    """What holds a client's reset back while the worker has the request (an HTTP/2
    stream's ``ClientCancel``; nothing on HTTP/1.1)."""
    return request.cancel.committed if request.cancel is not None else contextlib.nullcontext


def _done(pool, conn, admitted: Admitted) -> None:
    """The worker's response has been read whole: its connection and slot are free."""
    pool.put_back(conn)
    admitted.release(time.perf_counter() - admitted.chosen)


async def answer_bad_body(exc: BadRequestBody | ClientGone, send) -> int:
    """The client's own failure with its body: 400/413 answered, or 499 (gone)."""
    if isinstance(exc, ClientGone):
        return 499
    return await respond(send, exc.status, f"{exc}\n".encode())
