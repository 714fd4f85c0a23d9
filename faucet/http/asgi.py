"""ASGI messages faucet writes and reads itself, shared by the HTTP and WebSocket paths."""

from __future__ import annotations

from collections.abc import Sequence

from faucet.http.headers import http_date


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


async def respond(send, status: int, body: bytes, content_type: bytes = b"text/plain",
                  extra: Sequence[tuple[bytes, bytes]] = ()) -> int:
    """A response faucet writes itself; returns the status for telemetry."""
    headers = [(b"content-type", content_type + (b"; charset=utf-8"
                                                 if content_type == b"text/plain" else b"")),
               (b"content-length", str(len(body)).encode()), (b"date", http_date()),
               *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status


def retry_page(title: str, heading: str, text: str, retry_after: int) -> bytes:
    """A small HTML page faucet answers a browser with while it cannot serve it yet;
    it loads itself again after ``retry_after`` seconds (a meta refresh)."""
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"refresh\" content=\"{retry_after}\">"
        f"<title>{title}</title></head><body style=\"font-family:sans-serif;"
        f"max-width:36em;margin:4em auto\"><h1>{heading}</h1>"
        f"<p>{text}</p></body></html>\n").encode()


def wants_html(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the client asks for HTML (a browser loading a page): its Accept names
    text/html."""
    return any(name == b"accept" and b"text/html" in value.lower() for name, value in headers)


def handshake_responder(send):
    """``send`` for the HTTP answer to a WebSocket handshake: ``http.response.*`` messages
    go out as hypercorn's ``websocket.http.response.*`` extension, so ``respond`` serves
    both kinds of scope."""

    async def deny(message: dict) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return deny


async def body_piece(receive) -> tuple[bytes, bool]:
    """The next piece of the client's request body and whether more follows."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    return message.get("body", b""), message.get("more_body", False)
