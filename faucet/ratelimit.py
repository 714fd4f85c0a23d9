"""When a recurring problem is due another log line: at most once per ``every`` seconds,
with how many times it happened since the last line (not a line, or a traceback, each
time). The caller writes the line in its own words."""

from __future__ import annotations

import math

import trio


class RateLimit:
    def __init__(self, every: float):
        self.every = every
        self.next_line = -math.inf
        self.unlogged = 0

    def due(self) -> int | None:
        """One more occurrence; how many to report when a line is due now, else None."""
        self.unlogged += 1
        now = trio.current_time()
        if now < self.next_line:
            return None
        count, self.unlogged = self.unlogged, 0
        self.next_line = now + self.every
        return count
