"""Bytes that many holders share under one limit (pure accounting: no I/O, no trio)."""

from __future__ import annotations


class ByteBudget:
    """Take what fits, give it back when done; ``used`` never passes ``limit``."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Charge ``size`` bytes; False (nothing charged) when they do not fit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size
