"""One app behind the front door: its backends, their connection pools, its dispatcher."""

from __future__ import annotations

from attrs import define

from faucet.pool.backend import Backend
from faucet.pool.dispatch import Dispatcher
from faucet.pool.sticky import StickyCookie
from faucet.proxy.upstream import UpstreamPool


@define(eq=False)
class Mount:
    """``route`` is None in ``faucet start`` mode; ``pools`` are in backend order."""

    route: str | None
    dispatcher: Dispatcher
    pools: list[UpstreamPool]
    websockets: bool = True  # whether its app kind serves WebSockets (plumber does not)
    cookie: StickyCookie = StickyCookie()  # cookie-hash's cookie for this app
    session_app: bool = False  # its WebSockets are Shiny sessions (faucet.session_host)

    @property
    def backends(self) -> list[Backend]:
        return self.dispatcher.backends
