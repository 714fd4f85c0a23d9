"""A bounded first-in-first-out buffer of response bytes between the task reading a worker
and the task writing to a client, so a slow reader does not hold a (single-threaded) R
worker for a long response: up to ``memory_limit`` bytes are kept in memory, the rest
goes to an anonymous temporary file up to ``file_limit`` (as nginx's proxy_buffers and
proxy_max_temp_file_size); only when both are full does the worker's side wait.

File calls run in trio's worker threads (no blocking call on the event loop).
"""

from __future__ import annotations

import os
import tempfile
from collections import deque

import trio

READ_SIZE = 65536


class ResponseSpool:
    """``put`` from one task, ``get`` from another; ``close`` after the last ``put``."""

    def __init__(self, memory_limit: int, file_limit: int):
        self.memory_limit = memory_limit
        self.file_limit = file_limit
        self._memory: deque[bytes] = deque()
        self._in_memory = 0
        self._file: int | None = None  # descriptor of the unlinked temporary file
        self._written = 0  # file offsets: bytes written, bytes read back
        self._read = 0
        self._closed = False
        self._changed = trio.Event()

    @property
    def spilled(self) -> int:
        """Bytes waiting in the file."""
        return self._written - self._read

    async def put(self, data: bytes) -> None:
        """Add ``data`` after everything before it; waits only while memory and file are
        both full."""
        while True:
            if not self.spilled and self._in_memory + len(data) <= self.memory_limit:
                self._memory.append(data)
                self._in_memory += len(data)
                break
            if self.spilled + len(data) <= self.file_limit or not self.spilled:
                await self._spill(data)
                break
            await self._wait()
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
                if not self.spilled:  # drained: the file is reused from its start
                    self._written = self._read = 0
                self._wake()
                return data
            if self._closed:
                return b""
            await self._wait()

    async def aclose(self) -> None:
        """Release the temporary file (call in a ``finally``)."""
        if self._file is not None:
            fd, self._file = self._file, None
            os.close(fd)  # an unlinked file's close does not block on I/O

    async def _spill(self, data: bytes) -> None:
        if self._file is None:
            handle = await trio.to_thread.run_sync(tempfile.TemporaryFile)
            self._file = os.dup(handle.fileno())
            handle.close()
        written = await trio.to_thread.run_sync(os.pwrite, self._file, data, self._written)
        if written != len(data):
            raise OSError(f"short write to the response spool ({written} of {len(data)})")
        self._written += written

    async def _wait(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
