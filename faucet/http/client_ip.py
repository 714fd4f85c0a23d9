"""The client's address, as ``--ip-from`` says to read it (pure: no I/O)."""

from __future__ import annotations

import functools
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BadClientIp(ValueError):
    """The header ``--ip-from`` names is missing or malformed (the proxy answers 400)."""


def client_ip(peer: str | None, mode: str, forwarded_for: bytes | None,
              real_ip: bytes | None) -> IPAddress | None:
    """The client's address per ``--ip-from``.

    ``client``: the TCP peer. ``x-forwarded-for``: the rightmost entry, the one the
    trusted proxy in front of faucet appended (entries left of it are whatever the client
    wrote, so they cannot be trusted).
    ``x-real-ip``: the header's single address. Header modes raise BadClientIp when the
    header is missing or not an IP address.
    """
    if mode == "client":
        return _parse_ip(peer) if peer else None
    name = "X-Forwarded-For" if mode == "x-forwarded-for" else "X-Real-IP"
    raw = forwarded_for if mode == "x-forwarded-for" else real_ip
    if raw is None:
        raise BadClientIp(f"missing {name} header (faucet runs with --ip-from {mode})")
    text = raw.decode("latin-1").rsplit(",", 1)[-1].strip()
    address = _parse_ip(text)
    if address is None:
        raise BadClientIp(f"{name} header {text!r} is not an IP address "
                          f"(faucet runs with --ip-from {mode})")
    return address


@functools.lru_cache(maxsize=4096)  # the same few addresses, request after request
def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
