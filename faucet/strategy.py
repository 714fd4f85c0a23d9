"""The balancing strategies, named once: config checks against them, the dispatcher and
the proxy branch on them. Pure: no trio, no faucet imports."""

from __future__ import annotations

from enum import StrEnum


class Strategy(StrEnum):
    """A strategy's value is its name in faucet.toml, ``FAUCET_STRATEGY`` and ``--strategy``."""

    ROUND_ROBIN = "round-robin"
    IP_HASH = "ip-hash"
    COOKIE_HASH = "cookie-hash"
    LEAST_BUSY = "least-busy"  # ours; the Rust server has no counterpart

    @property
    def sticky(self) -> bool:
        """A client keeps its worker (by address or cookie) while that worker is up."""
        return self in (Strategy.IP_HASH, Strategy.COOKIE_HASH)
