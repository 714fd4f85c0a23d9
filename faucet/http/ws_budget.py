"""The memory all WebSocket sessions together may hold in unfinished (fragmented)
messages, and how many sessions may be open, in all and from one client address (pure
accounting: no I/O, no trio).

Each open message charges its bytes here as its fragments arrive and gives them back
when it is complete or its session ends; a fragment that does not fit closes that
session with 1009 (message too big) instead of growing faucet without bound.
"""

from __future__ import annotations

from faucet.http.byte_budget import ByteBudget


class WebSocketBudget(ByteBudget):
    """``memory`` bytes of unfinished messages (``used``), and at most ``max_websockets``
    open (``per_client`` from one address)."""

    def __init__(self, memory: int, max_websockets: int, per_client: int | None = None):
        super().__init__(memory)
        self.max_websockets = max_websockets
        self.per_client = per_client
        self.open = 0  # WebSocket connections, Shiny sessions' client legs among them
        self._by_client: dict[object, int] = {}  # open per client address

    def open_session(self, client: object = None) -> str | None:
        """Count a new WebSocket from ``client`` (its address; None: not counted per
        client); why not (nothing counted) when ``max_websockets`` are open, or
        ``per_client`` from that address."""
        if self.open >= self.max_websockets:
            return f"{self.max_websockets} WebSockets are open, the most allowed"
        mine = self._by_client.get(client, 0) if client is not None else 0
        if self.per_client is not None and mine >= self.per_client:
            return f"this address has {mine} WebSockets open, the most allowed"
        self.open += 1
        if client is not None:
            self._by_client[client] = mine + 1
        return None

    def close_session(self, client: object = None) -> None:
        self.open -= 1
        if client is not None:
            left = self._by_client.pop(client) - 1
            if left:
                self._by_client[client] = left

    def statistics(self) -> dict:
        return {"open": self.open, "max_websockets": self.max_websockets,
                "clients": len(self._by_client), "unfinished_bytes": self.used,
                "memory": self.limit}
