"""WebSocket handshakes: admitted like any request, then a Shiny session (opened or
resumed by faucet.proxy.shiny) or a plain relay to the worker (faucet.proxy.websocket).
One telemetry event per session: 101 and its length when upgraded, else the HTTP status
the handshake got."""

from __future__ import annotations

import time

import trio
from attrs import frozen

from faucet.config.settings import Config
from faucet.http.asgi import handshake_responder, respond
from faucet.http.request import Request
from faucet.http.ws_budget import WebSocketBudget
from faucet.proxy.admission import RETRY_AFTER, Admission, Arrival
from faucet.proxy.forwarding import Forwarder
from faucet.proxy.shiny.session_host import SessionHost
from faucet.proxy.shiny.sessions import Refused
from faucet.proxy.websocket import open_session, relay, worker_handshake


@frozen
class UpgradeSettings:
    """What WebSocket handshakes and relays read of the settings."""

    response_timeout: float  # for the worker's handshake answer
    max_message_size: int
    idle_timeout: float  # websocket_idle_timeout

    @classmethod
    def of(cls, config: Config) -> UpgradeSettings:
        return cls(config.response_timeout, int(config.max_message_size),
                   config.websocket_idle_timeout)


class Upgrades:
    """Serves the WebSocket handshakes hypercorn hands over."""

    def __init__(self, settings: UpgradeSettings, admission: Admission, forwarder: Forwarder,
                 websockets: WebSocketBudget, sessions: SessionHost, stopping: trio.Event):
        """``stopping`` is set when a shutdown begins, so open sessions close at once;
        ``websockets`` bounds their number and memory; ``sessions`` holds the Shiny
        apps' sessions."""
        self.settings = settings
        self.admission = admission
        self.forwarder = forwarder
        self.websockets = websockets
        self.sessions = sessions
        self.stopping = stopping

    async def serve(self, request: Request, receive, send) -> None:
        started = time.perf_counter()
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake reached us
        deny = handshake_responder(send)
        arrival = await self.admission.arrive(request, deny, started)
        if arrival is None:
            return
        if not arrival.mount.websockets:
            status = await respond(deny, 400, b"Bad Request: this app serves no WebSockets\n")
            self.admission.record(arrival.draft, status, None, started)
            return
        refused = self.websockets.open_session(arrival.ip)
        if refused is not None:
            status = await respond(deny, 503, f"Service Unavailable: {refused}\n".encode(),
                                   extra=[(b"retry-after", RETRY_AFTER)])
            self.admission.record(arrival.draft, status, None, started)
            return
        try:
            await self._session(arrival, receive, send, deny)
        finally:
            self.websockets.close_session(arrival.ip)

    async def _session(self, arrival: Arrival, receive, send, deny) -> None:
        """One admitted WebSocket: a Shiny session resumed or opened, or a plain relay;
        ``deny`` answers the handshake in HTTP."""
        admitted = await self.admission.claim(arrival, deny)
        if admitted is None:
            return
        placement = arrival.placement
        # A new Shiny session holds its id and counts on its worker from now on
        # (faucet.proxy.shiny.sessions.Reservation); a taken id or a client over its
        # limit is refused.
        reservation = (self.sessions.reserve(placement, admitted.backend, arrival.ip)
                       if placement.opens else None)
        if isinstance(reservation, Refused):
            admitted.release()
            status = await respond(deny, reservation.status, f"{reservation.reason}\n".encode())
            self.admission.record(arrival.draft, status, None, admitted.chosen)
            return
        status = 0
        try:
            if placement.session is not None or placement.refusal == "gone":
                # A Shiny session's reconnect: the session host resumes it or refuses it.
                admitted.release()
                status = 101
                await self.sessions.join(placement, arrival.request, receive, send)
                return
            handshake = worker_handshake(arrival.request, arrival.fields, arrival.target,
                                         self.forwarder.headers_for(arrival))
            timeout = self.settings.response_timeout
            try:
                with trio.fail_after(timeout):
                    worker, status = await open_session(admitted.backend, handshake, send)
            except trio.TooSlowError:
                admitted.backend.note_timeout()
                status = await respond(deny, 504, b"Gateway Timeout: the worker did not "
                                       b"answer the upgrade within "
                                       + f"{timeout:g}s\n".encode())
                return
            finally:
                admitted.release()  # the slot covers the handshake, not the session
            if worker is not None and reservation is not None:
                await self.sessions.open(placement, reservation, worker, receive, send)
            elif worker is not None:
                admitted.backend.session_opened()
                try:
                    await relay(worker, receive, send, self.settings.max_message_size,
                                self.stopping, self.websockets,
                                self.settings.idle_timeout)
                finally:
                    admitted.backend.session_closed()
        finally:
            if reservation is not None:
                reservation.release()
            self.admission.record(arrival.draft, status, admitted.backend, admitted.chosen)
