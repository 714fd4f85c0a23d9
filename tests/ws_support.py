"""WebSocket test helpers: a stand-in worker that is not Shiny, and a faucet config that
runs it.

The worker is a trio-websocket echo server run through a stand-in ``--rscript`` (faucet
passes the port inside its ``-e`` code). Commands, one text message each:
``headers`` -> JSON of the handshake's path and headers; ``close CODE REASON`` -> the
worker closes; ``big N`` -> a text message of N bytes; ``close-of PATH`` -> "CODE REASON" of
the close the worker saw for the session opened at PATH; anything else is echoed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from tests.helpers import ROOT, config_for

PROTOCOLS = ("echo.v2", "echo.v1")  # the worker accepts the first of these it is offered


def echo_config(tmp_path: Path, **overrides):
    """A faucet config whose workers are the echo server."""
    standin = tmp_path / "Rscript"
    standin.write_text(f"#!/bin/sh\ncd {ROOT}\nexec {sys.executable} -m tests.ws_support \"$@\"\n")
    standin.chmod(0o755)
    return config_for(**{"dir": str(tmp_path), "type": "shiny", "strategy": "round-robin",
                         "rscript": str(standin), **overrides})


class _EchoWorker:
    def __init__(self):
        self.closes: dict[str, str] = {}
        self._closed = trio.Event()

    async def handle(self, request: WebSocketRequest) -> None:
        offered = request.proposed_subprotocols
        ws = await request.accept(subprotocol=next((p for p in PROTOCOLS if p in offered), None))
        try:
            while True:
                await self._answer(ws, request, await ws.get_message())
        except ConnectionClosed as exc:
            self.closes[request.path] = f"{exc.reason.code} {exc.reason.reason}"
            self._closed.set()
            self._closed = trio.Event()

    async def _answer(self, ws, request: WebSocketRequest, message) -> None:
        command, _, rest = message.partition(" ") if isinstance(message, str) else ("", "", "")
        if command == "headers":
            await ws.send_message(json.dumps({
                "path": request.path,
                "headers": [[n.decode(), v.decode()] for n, v in request.headers]}))
        elif command == "close":
            code, _, reason = rest.partition(" ")
            await ws.aclose(int(code), reason)
        elif command == "big":
            await ws.send_message("x" * int(rest))
        elif command == "close-of":
            with trio.fail_after(5):
                while rest not in self.closes:
                    await self._closed.wait()
            await ws.send_message(self.closes[rest])
        else:
            await ws.send_message(message)


async def _serve(port: int) -> None:
    await serve_websocket(_EchoWorker().handle, "127.0.0.1", port, ssl_context=None,
                          max_message_size=64 * 1024 * 1024)


if __name__ == "__main__":
    # argv: -e 'options("shiny.port"=PORT); ...' (the shiny worker command)
    trio.run(_serve, int(re.search(r'port"=(\d+)', sys.argv[-1]).group(1)))
