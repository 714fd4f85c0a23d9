"""One app behind the front door: its backends, their connection pools, its dispatcher."""

from __future__ import annotations

from attrs import define

from faucet.backend import Backend
from faucet.dispatch import Dispatcher
from faucet.upstream import UpstreamPool


@define(eq=False)
class Mount:
    """``route`` is None in ``faucet start`` mode; ``pools`` are in backend order."""

    route: str | None
    dispatcher: Dispatcher
    pools: list[UpstreamPool]
    session_app: bool = False  # its WebSockets are Shiny sessions (faucet.session_host)

    @property
    def backends(self) -> list[Backend]:
        return self.dispatcher.backends
