"""``redact``: mask every password a text may carry before it is shown or logged.

Used on every path where a connection string, or a message built from one, can reach a
user: config problem lines, sink errors and logs, ``faucet telemetry init``, and the
health endpoint's last error. Pure and knowing no secrets in advance, so it works on text
from anywhere (a plugin's exception, a repr'd value); it masks too much rather than too
little.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host, any scheme and case. The password runs to the LAST '@'
# (an unencoded '@' or '/' in a password is common), across spaces and lines.
_URI_CREDENTIALS = re.compile(r"(?is)([a-z][a-z0-9+.\-]*://[^:@]*):.*@")
# password=... as libpq's key/value conninfo (and URI query parameters) write it: quoted,
# with backslash escapes, or up to whitespace or the next "&name=". ``\\+.`` also steps
# over the doubled backslashes of a repr'd value. Matches sslpassword=, PGPASSWORD= too.
_KEY_VALUE = re.compile(
    r"""(?is)(password\s*=\s*)"""
    r"""('(?:\\+.|[^'\\])*'?|"(?:\\+.|[^"\\])*"?|(?:\\+.|[^\s\\&]|&(?!\w+=))+)"""
)


def redact(text: str) -> str:
    """``text`` with the password of every connection string in it replaced by ``***``."""
    text = _URI_CREDENTIALS.sub(rf"\1:{MASK}@", text)
    return _KEY_VALUE.sub(rf"\g<1>{MASK}", text)


def error_text(exc: BaseException) -> str:
    """How an exception from a sink or a driver is shown: masked, on one line (libpq's
    messages span several), and never empty."""
    return redact(" ".join(str(exc).split())) or type(exc).__name__
