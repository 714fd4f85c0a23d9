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
    RPS = "rps"  # least-busy over a pool that grows and shrinks with the load (autoscale)

    @property
    def sticky(self) -> bool:
        """A client keeps its worker (by address or cookie) while that worker is up."""
        return self in (Strategy.IP_HASH, Strategy.COOKIE_HASH)

    @property
    def queues(self) -> bool:
        """Requests wait in one queue inside faucet for an idle worker (least-busy's
        dispatch)."""
        return self in (Strategy.LEAST_BUSY, Strategy.RPS)

    @property
    def scales(self) -> bool:
        """The pool's workers are started and stopped with the load (``max_rps``)."""
        return self is Strategy.RPS
