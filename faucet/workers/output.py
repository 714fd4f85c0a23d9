"""What a worker's output becomes in faucet's log (pure: bytes in, log lines out).

A worker writes whatever it likes to stdout and stderr; faucet's log is read by people
and parsed by tools, so a worker must not be able to forge or flood it (issue 18):

- control characters are shown, not obeyed: a carriage return that would overwrite the
  line's start on a terminal, ANSI escapes that recolour or erase it, a NUL, a line
  separator. They become ``\\xNN`` (``\\u2028`` and the like above 0xff); a tab stays.
- a line is cut at ``LINE_LIMIT`` bytes, with ``[... N bytes cut]``; the rest of it, up
  to its newline, is counted and dropped, never split into more lines.
- a line that is mostly not text (random or compressed bytes: a quarter or more of it
  invalid UTF-8 or control characters) is not escaped byte by byte, which would make
  each byte four: it is logged as ``[binary output: N bytes, starts ...]``, as journald
  shows "blob data". A line with a few bad bytes (a latin-1 "é") is escaped as text.
"""

from __future__ import annotations

import re

LINE_LIMIT = 16 * 1024  # bytes of one line that reach the log
BINARY_SHARE = 4  # a line whose 1/BINARY_SHARE or more is not text is summarised
BINARY_PREVIEW = 8  # bytes of a binary line shown, escaped (enough for a magic number)

# C0 controls but tab, DEL, C1 controls, and the Unicode line/paragraph separators and
# bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ESCAPE = re.compile(r"\\x[0-9a-f]{2}")  # what backslashreplace wrote for a bad byte


def _escaped(char: re.Match) -> str:
    code = ord(char[0])
    return f"\\x{code:02x}" if code <= 0xff else f"\\u{code:04x}"


def _shown(raw: bytes) -> tuple[str, int]:
    """``raw`` as text with bad bytes and control characters escaped; how many of those."""
    text = raw.decode("utf-8", "backslashreplace")
    bad = len(_ESCAPE.findall(text))  # a literal "\x41" counts too: close enough
    text, controls = _CONTROL.subn(_escaped, text)
    return text, bad + controls


def printable(raw: bytes, cut: int = 0) -> str:
    """One worker line (without its newline) as it goes to the log; ``cut``: bytes of it
    dropped after ``raw`` (``LineSplitter``)."""
    if raw.endswith(b"\r"):  # a CRLF line end
        raw = raw[:-1]
    text, noise = _shown(raw)
    if noise * BINARY_SHARE >= len(raw) > 0:
        return (f"[binary output: {len(raw) + cut} bytes, starts "
                f"{_shown(raw[:BINARY_PREVIEW])[0]}]")
    return f"{text} [... {cut} bytes cut]" if cut else text


class LineSplitter:
    """A worker's output stream, split into lines of at most ``limit`` bytes: ``feed``
    takes each chunk read and gives the (line, bytes cut) pairs it completed; ``end``
    gives what was left without a newline. It holds at most ``limit`` bytes."""

    def __init__(self, limit: int = LINE_LIMIT):
        self.limit = limit
        self._line = bytearray()
        self._cut = 0  # bytes of the current line dropped past the limit

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        done = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._take(chunk[start:end])
            done.append(self._finish())
            start = end + 1
        self._take(chunk[start:])
        return done

    def end(self) -> tuple[bytes, int] | None:
        """The last line if the stream ended without a newline."""
        return self._finish() if self._line or self._cut else None

    def _take(self, piece: bytes) -> None:
        room = self.limit - len(self._line)
        self._line += piece[:room]
        self._cut += max(len(piece) - room, 0)

    def _finish(self) -> tuple[bytes, int]:
        line, cut = bytes(self._line), self._cut
        self._line.clear()
        self._cut = 0
        return line, cut
