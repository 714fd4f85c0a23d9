"""The memory all WebSocket sessions together may hold in unfinished (fragmented)
messages, and how many sessions may be open (pure accounting: no I/O, no trio).

Each open message charges its bytes here as its fragments arrive and gives them back
when it is complete or its session ends; a fragment that does not fit closes that
session with 1009 (message too big) instead of growing faucet without bound.
"""

from __future__ import annotations


class WebSocketBudget:
    def __init__(self, memory: int, max_websockets: int):
        self.memory = memory
        self.max_websockets = max_websockets
        self.held = 0  # bytes of unfinished messages
        self.open = 0  # WebSocket connections, Shiny sessions' client legs among them

    def take(self, size: int) -> bool:
        """Charge ``size`` bytes; False (nothing charged) when they do not fit."""
        if self.held + size > self.memory:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size

    def open_session(self) -> bool:
        """Count a new WebSocket; False (not counted) when ``max_websockets`` are open."""
        if self.open >= self.max_websockets:
            return False
        self.open += 1
        return True

    def close_session(self) -> None:
        self.open -= 1

    def statistics(self) -> dict:
        return {"open": self.open, "max_websockets": self.max_websockets,
                "unfinished_bytes": self.held, "memory": self.memory}
