"""A small FastAPI app for faucet's docs and tests; `fastapi run` serves ``app``."""

import os

from fastapi import FastAPI, Request

app = FastAPI()


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
