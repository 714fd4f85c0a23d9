"""A stand-in Shiny worker for the session tests (no R): a trio-websocket server that
speaks first with Shiny's ``{"config":{"sessionId":TOKEN}}``, records every message a
session receives, and sends numbered messages when told to.

Commands, one text message each: ``log`` -> a JSON list of the messages this session
received before it; ``headers`` -> a JSON object of its handshake's headers; ``emit TOKEN
K`` -> the session with Shiny token TOKEN (this one or another of this worker) sends ``n:1``,
``n:2``... (its count goes on across commands) K more times, or until it is closed, then
this one gets ``emitted``; ``close CODE REASON`` -> the session closes. Anything else is
only recorded.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import uuid
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from tests.helpers import ROOT, config_for


def standin_config(tmp_path: Path, **overrides):
    """A faucet config for a shiny app whose workers are this stand-in."""
    standin = tmp_path / "Rscript"
    standin.write_text(f"#!/bin/sh\ncd {ROOT}\nexec {sys.executable} -m tests.shiny_standin "
                       "\"$@\"\n")
    standin.chmod(0o755)
    return config_for(dir=str(tmp_path), type="shiny", rscript=str(standin), **overrides)


class _Session:
    def __init__(self, ws):
        self.ws = ws
        self.token = uuid.uuid4().hex
        self.received: list[str] = []
        self.emitted = 0


class _Worker:
    def __init__(self):
        self.sessions: dict[str, _Session] = {}

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        session = _Session(ws)
        self.sessions[session.token] = session
        try:
            await ws.send_message(json.dumps({"config": {"workerId": "",
                                                         "sessionId": session.token}}))
            while True:
                await self._answer(session, request, await ws.get_message())
        except ConnectionClosed:
            pass
        finally:
            del self.sessions[session.token]

    async def _answer(self, session: _Session, request: WebSocketRequest, message) -> None:
        command, *args = message.split(" ") if isinstance(message, str) else ("",)
        if command == "log":
            await session.ws.send_message(json.dumps(session.received))
        elif command == "headers":
            await session.ws.send_message(json.dumps(
                {n.decode().lower(): v.decode() for n, v in request.headers}))
        elif command == "emit":
            target = self.sessions[args[0]]
            with contextlib.suppress(ConnectionClosed):  # faucet may end it meanwhile
                for _ in range(int(args[1])):
                    target.emitted += 1
                    await target.ws.send_message(f"n:{target.emitted}")
            await session.ws.send_message("emitted")
        elif command == "close":
            await session.ws.aclose(int(args[0]), " ".join(args[1:]))
        else:
            session.received.append(message)


async def _serve(port: int) -> None:
    await serve_websocket(_Worker().handle, "127.0.0.1", port, ssl_context=None)


if __name__ == "__main__":
    # argv: -e 'options("shiny.port"=PORT); ...' (the shiny worker command)
    trio.run(_serve, int(re.search(r'port"=(\d+)', sys.argv[-1]).group(1)))
