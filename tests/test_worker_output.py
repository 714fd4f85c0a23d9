"""A worker cannot forge or flood faucet's log (issue 18 round two, item 16): its lines
are escaped and cut (faucet.workers.output), through relay_output as the supervisor
runs it."""

from __future__ import annotations

import logging
import os

import trio

from faucet.workers.output import LINE_LIMIT, LineSplitter, printable
from faucet.workers.supervisor import relay_output
from tests.test_supervisor import LogWatch


def test_control_characters_are_shown_not_obeyed():
    """A CR would put a forged "ERROR faucet: ..." over the line's start on a terminal,
    ANSI escapes erase and recolour it: before, both reached the log as they were."""
    forged = b"ok\rERROR faucet: fake\x1b[2K\x1b[31mred\x00\xc2\x85\xe2\x80\xae"
    assert printable(forged) == (
        "ok\\x0dERROR faucet: fake\\x1b[2K\\x1b[31mred\\x00\\x85\\u202e")
    assert printable(b"a\tb\r") == "a\tb"  # a tab stays; a CRLF's CR is the line end
    # a few stray bytes (latin-1 from an R session): still text
    assert printable("le café est prêt".encode("latin-1")) == "le caf\\xe9 est pr\\xeat"


def test_mostly_binary_lines_are_summarised():
    noise = bytes(range(128, 256)) * 2
    assert printable(noise) == ("[binary output: 256 bytes, starts "
                                + "".join(f"\\x{b:02x}" for b in range(128, 136)) + "]")
    assert printable(noise[:10], cut=90).startswith("[binary output: 100 bytes, starts ")


def test_long_lines_are_cut_with_a_count_and_not_split():
    splitter = LineSplitter(limit=8)
    assert splitter.feed(b"0123456789") == []
    assert splitter.feed(b"abc\nshort\nrest") == [(b"01234567", 5), (b"short", 0)]
    assert splitter.end() == (b"rest", 0)
    assert splitter.end() is None
    assert printable(b"01234567", 5) == "01234567 [... 5 bytes cut]"


async def relayed(data: bytes) -> list[str]:
    send, receive = trio.open_memory_channel[bytes](1)
    watch = LogWatch()
    async with trio.open_nursery() as nursery:
        async def feed() -> None:
            async with send:
                for start in range(0, len(data), 65536):
                    await send.send(data[start:start + 65536])
        nursery.start_soon(feed)
        await relay_output(receive, watch.logger, logging.INFO, None)
    return watch.lines


async def test_a_flood_of_bytes_stays_small_in_the_log():
    """Before: 5 MiB without a newline became 81 log lines of 64 KiB, and 8 MiB of random
    bytes 2.1x their size (each bad byte a 3-byte U+FFFD)."""
    assert await relayed(b"x" * (5 * 1024 * 1024) + b"\nnext\n") == [
        "x" * LINE_LIMIT + f" [... {5 * 1024 * 1024 - LINE_LIMIT} bytes cut]", "next"]
    noise = os.urandom(8 * 1024 * 1024)
    lines = await relayed(noise)
    assert len("\n".join(lines).encode()) < len(noise) / 3
    assert len(lines) == noise.count(b"\n") + 1
