"""Retiring workers that newer ones replaced: a reload's old generation, and a recycled
worker (a generation of one). Out of routing already; their requests in flight finish,
their Shiny sessions stay until they end or ``drain_timeout`` passes (then they are told
to reload, onto the workers that replaced theirs), and then their processes stop."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from faucet.config.settings import Config
from faucet.proxy.mount import Generation, Mount
from faucet.proxy.shiny.session_host import SessionHost

log = logging.getLogger("faucet")
# A drain lasts from milliseconds to drain_timeout (an hour): looking DRAIN_CHECK times a
# second costs nothing and needs no hook on the request path.
DRAIN_CHECK = 0.1
SESSIONS_CLOSE = 10.0  # seconds for sessions told to reload to close


async def drain_and_stop(config: Config, sessions: SessionHost, mount: Mount,
                         generation: Generation, stop: Callable[[], None]) -> None:
    """Wait for a retired generation's requests and sessions to end (sessions at most
    ``drain_timeout``), then ``stop`` its processes; it leaves ``mount.retired`` however
    this ends (cancelled with the workers' own task, too)."""
    try:
        with trio.move_on_after(config.drain_timeout):
            while not generation.idle():  # noqa: ASYNC110 (see DRAIN_CHECK)
                await trio.sleep(DRAIN_CHECK)
        if not generation.idle():
            ended = sessions.end_on(generation.backends)
            log.info("%s: drain_timeout passed; %d Shiny session(s) told to reload onto "
                     "the new workers", mount.route or "app", ended)
            with trio.move_on_after(SESSIONS_CLOSE):
                while not generation.idle():  # noqa: ASYNC110
                    await trio.sleep(DRAIN_CHECK)
        stop()
    finally:
        mount.retired.remove(generation)
