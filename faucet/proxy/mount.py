"""One app behind the front door, and the generations of workers that serve it.

A generation is one deploy of the app: its backends, their connection pools and its
dispatcher. New requests go to the ``live`` one; a reload puts a new one live and the
old ones drain (``retired``) until their requests and Shiny sessions are over. A recycled
worker leaves the same way, as a generation of one, once its successor has its place.
"""

from __future__ import annotations

from attrs import define, field

from faucet.pool.backend import Backend
from faucet.pool.dispatch import Dispatcher
from faucet.pool.sticky import StickyCookie
from faucet.proxy.upstream import UpstreamPool


@define(eq=False)
class Generation:
    """One deploy of an app (or one recycled worker of it, draining); ``pools`` by
    backend index."""

    number: int
    dispatcher: Dispatcher
    pools: dict[int, UpstreamPool]

    @property
    def backends(self) -> list[Backend]:
        return self.dispatcher.backends

    def replace(self, new: Backend) -> Generation:
        """A recycled worker's ``new`` successor (online) takes its place; the old worker
        comes back as a generation of one, to be retired as a reload retires one."""
        old_pool = self.pools[new.index]
        self.pools[new.index] = UpstreamPool(new)
        return Generation(self.number, self.dispatcher.replace(new), {new.index: old_pool})

    def idle(self) -> bool:
        """No request in flight and no WebSocket session left on any of its workers."""
        return all(b.inflight == 0 and b.sessions == 0 for b in self.backends)


@define(eq=False)
class Mount:
    """``route`` is None in ``faucet start`` mode."""

    route: str | None
    live: Generation
    websockets: bool = True  # whether its app kind serves WebSockets (plumber does not)
    cookie: StickyCookie = StickyCookie()  # cookie-hash's cookie for this app
    session_app: bool = False  # its WebSockets are Shiny sessions (faucet.session_host)
    retired: list[Generation] = field(factory=list)  # draining after a reload

    @property
    def dispatcher(self) -> Dispatcher:
        return self.live.dispatcher

    @property
    def backends(self) -> list[Backend]:
        """The live generation's workers (where new requests and sessions go)."""
        return self.live.dispatcher.backends

    def generation_of(self, backend: Backend) -> Generation:
        """The generation ``backend`` belongs to (a Shiny session's worker may be a
        draining one's)."""
        for generation in (self.live, *self.retired):
            if backend in generation.backends:
                return generation
        return self.live

    def every_backend(self) -> list[Backend]:
        """Live and draining workers alike (what health shows)."""
        return [b for g in (self.live, *self.retired) for b in g.backends]
