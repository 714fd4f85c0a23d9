"""A small FastAPI app for faucet's docs and tests; `fastapi run` serves ``app``."""

import os

from fastapi import FastAPI, Request


class ForwardedPrefix:
    """Mounted under a prefix by ``faucet router`` (``/py/``), the app sees paths without
    it and gets ``X-Forwarded-Prefix: /py``; this copies that header into the ASGI scope's
    ``root_path``, so the links FastAPI builds (``/docs`` loads ``/py/openapi.json``) point
    back through faucet. Without the header (``faucet start``) nothing changes."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            for name, value in scope["headers"]:
                if name == b"x-forwarded-prefix":
                    scope = {**scope, "root_path": value.decode("latin-1").rstrip("/")}
                    break
        await self.app(scope, receive, send)


app = FastAPI()
app.add_middleware(ForwardedPrefix)


@app.get("/")
def worker(request: Request) -> dict:
    """Which worker answered (faucet sets FAUCET_WORKER_ID, 1-based), the path it saw and
    the prefix faucet stripped in router mode."""
    return {
        "worker": os.environ.get("FAUCET_WORKER_ID"),
        "path": request.url.path,
        "prefix": request.headers.get("x-forwarded-prefix"),
    }


@app.get("/echo")
def echo(msg: str = "") -> dict:
    """The message back."""
    return {"msg": msg}
