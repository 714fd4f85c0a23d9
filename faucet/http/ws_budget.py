"""The memory all WebSocket sessions together may hold in unfinished (fragmented)
messages, and how many sessions may be open, in all and from one client address (pure
accounting: no I/O, no trio).

Each open message charges its bytes here as its fragments arrive and gives them back
when it is complete or its session ends; a fragment that does not fit closes that
session with 1009 (message too big) instead of growing faucet without bound.
"""

from __future__ import annotations


class WebSocketBudget:
    def __init__(self, memory: int, sessions: int, per_client: int | None = None):
        self.memory = memory
        self.sessions = sessions
        self.per_client = per_client
        self.held = 0  # bytes of unfinished messages
        self.open = 0  # sessions
        self._by_client: dict[object, int] = {}  # sessions open per client address

    def take(self, size: int) -> bool:
        """Charge ``size`` bytes; False (nothing charged) when they do not fit."""
        if self.held + size > self.memory:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size

    def open_session(self, client: object = None) -> str | None:
        """Count a new session from ``client`` (its address; None: not counted per
        client); why not (nothing counted) when ``sessions`` are open, or ``per_client``
        from that address."""
        if self.open >= self.sessions:
            return f"{self.sessions} WebSocket sessions are open, the most allowed"
        mine = self._by_client.get(client, 0) if client is not None else 0
        if self.per_client is not None and mine >= self.per_client:
            return f"this address has {mine} WebSocket sessions open, the most allowed"
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
        return {"sessions": self.open, "max_sessions": self.sessions,
                "clients": len(self._by_client), "unfinished_bytes": self.held,
                "memory": self.memory}
