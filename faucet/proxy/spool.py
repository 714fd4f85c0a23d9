"""A bounded first-in-first-out buffer of response bytes between the task reading a worker
and the task writing to a client, so a slow reader does not hold a (single-threaded) R
worker for a long response: up to ``memory_limit`` bytes are kept in memory, the rest
goes to an anonymous temporary file of at most ``file_limit`` bytes (nginx's
proxy_buffers and proxy_max_temp_file_size), and all spools' files together stay within
one ``SpoolBudget`` (``max_spool_total``). When none of these has room the worker's side
waits: the worker is read only as fast as the client takes the response (backpressure).

The file is written from its start again only once the client has read all of it, so
its size, not the bytes not yet read, is what the limits count: a steady reader slower
than the worker otherwise grew one file far past ``max_spool_size``.

A failing disk (ENOSPC, a quota, EIO) is not the client's problem: the spool stops
using its file and falls back to backpressure, and the budget logs the trouble at most
once per ``DISK_LOG_EVERY`` seconds. File calls run in trio's worker threads (no
blocking call on the event loop); ``write`` (``os.pwrite``'s shape) is the seam tests
fail.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable

import trio

from faucet.http.byte_budget import ByteBudget
from faucet.ratelimit import RateLimit

READ_SIZE = 65536
DISK_LOG_EVERY = 60.0  # seconds between two log lines about the spool's disk

log = logging.getLogger("faucet.spool")


class SpoolBudget(ByteBudget):
    """The bytes all spools' files may take together (``max_spool_total``), and the one
    place that reports the disk failing under them."""

    def __init__(self, total: int):
        super().__init__(total)
        self.fallbacks = 0  # spools that fell back to backpressure, since faucet started
        self._disk_log = RateLimit(DISK_LOG_EVERY)

    def disk_failed(self, error: OSError) -> None:
        """A spool could not write its file: it waits on the client instead. Logged once
        per DISK_LOG_EVERY seconds, with how many spools fell back meanwhile."""
        self.fallbacks += 1
        if (count := self._disk_log.due()) is not None:
            log.warning("response spool: cannot write its temporary file (%s); %d "
                        "response(s) now read from their workers at their clients' pace "
                        "instead (TMPDIR full or failing?)", error, count)


class ResponseSpool:
    """``put`` from one task, ``get`` from another; ``close`` after the last ``put``."""

    def __init__(self, memory_limit: int, file_limit: int, budget: SpoolBudget | None = None,
                 write: Callable[[int, bytes, int], int] = os.pwrite):
        self.memory_limit = memory_limit
        self.file_limit = file_limit
        self.budget = budget if budget is not None else SpoolBudget(file_limit)
        self._write = write
        self._memory: deque[bytes] = deque()
        self._in_memory = 0
        self._file: int | None = None  # descriptor of the unlinked temporary file
        self._disk = True  # False once writing the file failed: memory only
        self._written = 0  # file offsets: bytes written, bytes read back
        self._read = 0
        self.file_size = 0  # the file's size on disk (what the budget holds for it)
        self._spilling = False  # a write to the file is under way (in a thread)
        self._closed = False
        self._changed = trio.Event()

    @property
    def spilled(self) -> int:
        """Bytes waiting in the file."""
        return self._written - self._read

    async def put(self, data: bytes) -> None:
        """Add ``data`` after everything before it; waits while memory and file are both
        full (or the file is out of use and memory full)."""
        while True:
            changed = self._changed  # set by a change even while a spill attempt awaits
            if not self.spilled and (self._in_memory + len(data) <= self.memory_limit
                                     or not self._memory):
                self._memory.append(data)
                self._in_memory += len(data)
                break
            if await self._spill(data):
                break
            await changed.wait()
        self._wake()

    def close(self) -> None:
        """No more data will come; ``get`` returns b"" once the rest is taken."""
        self._closed = True
        self._wake()

    async def get(self) -> bytes:
        """The next bytes in order; b"" once closed and empty."""
        while True:
            if self._memory:
                data = self._memory.popleft()
                self._in_memory -= len(data)
                self._wake()
                return data
            if self.spilled:
                data = await trio.to_thread.run_sync(
                    os.pread, self._file, min(READ_SIZE, self.spilled), self._read)
                self._read += len(data)
                # Drained: the file is reused from its start, unless a write past its
                # end is under way (rewinding then would lose that write's bytes).
                if not self.spilled and not self._spilling:
                    self._written = self._read = 0
                self._wake()
                return data
            if self._closed:
                return b""
            await self._wait()

    async def aclose(self) -> None:
        """Release the temporary file and its share of the budget (call in a
        ``finally``)."""
        self.budget.give(self.file_size)
        self.file_size = 0
        if self._file is not None:
            fd, self._file = self._file, None
            os.close(fd)  # an unlinked file's close does not block on I/O

    async def _spill(self, data: bytes) -> bool:
        """Write ``data`` at the file's end if the file and the budget have room; False
        (nothing written) when they have none or the disk fails."""
        end = self._written + len(data)
        growth = max(end - self.file_size, 0)
        if not self._disk or end > self.file_limit or not self.budget.take(growth):
            return False
        self._spilling = True
        try:
            if self._file is None:
                handle = await trio.to_thread.run_sync(tempfile.TemporaryFile)
                self._file = os.dup(handle.fileno())
                handle.close()
            written = await trio.to_thread.run_sync(self._write, self._file, data,
                                                    self._written)
            if written != len(data):  # only a full disk writes less to a regular file
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            self.budget.give(growth)
            self._disk = False
            self.budget.disk_failed(exc)
            return False
        finally:
            self._spilling = False
        self.file_size += growth
        self._written = end
        return True

    async def _wait(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
