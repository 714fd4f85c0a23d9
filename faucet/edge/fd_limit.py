"""The open-file budget: each client connection costs faucet a descriptor, and one more
while it talks to a worker, so the connection cap must stay below what the process may
open (running out makes accept() fail and every worker connection with it)."""

from __future__ import annotations

import resource

RESERVED = 256  # descriptors kept for workers' pipes, logs, telemetry and listeners
_CEILING = 1 << 20  # when the hard limit is unlimited


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit we have; the budget below follows it
    return soft


def connection_budget(open_files: int) -> int:
    """Client connections that ``open_files`` descriptors can carry: two each (the client
    and its worker connection), after the reserve; at least 1."""
    return max(1, (open_files - RESERVED) // 2)
