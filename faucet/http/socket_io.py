"""Socket reads and writes that call the kernel first and go to trio only to wait.

trio's ``SocketStream.send_all`` and ``receive_some`` make every call a checkpoint: even
when the kernel takes or has the bytes at once, the task yields, and the scheduler turns
over (an ``epoll_wait`` with a zero timeout, other tasks, then this one again). A proxied
request makes four to six such calls, so on this path they cost more than the calls
themselves. Here the system call comes first; only a call that would block waits
(``wait_writable`` / ``wait_readable``), which is also where cancellation and deadlines
act. Every exchange still waits at least once (for the worker's answer). A run of calls
that never wait yields every ``YIELD_EVERY`` calls all the same, so that a fast client
streaming a large body cannot keep the loop to itself.

Errors are trio's stream errors: ``BrokenResourceError`` when the peer is gone,
``ClosedResourceError`` when the socket was closed here.
"""

from __future__ import annotations

import errno
import os

import trio

YIELD_EVERY = 32  # calls that did not wait, between two turns given to other tasks
_streak = 0  # calls that did not wait since the last turn (one loop, one thread)


async def send_all(stream: trio.SocketStream, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data``, waiting for the kernel to take it as long as that takes
    (the caller's deadline bounds a client that does not read)."""
    rest = send_now(stream, data)
    if not rest:
        await _maybe_yield()
        return
    while rest:
        await trio.lowlevel.wait_writable(stream.socket)
        rest = send_now(stream, rest)


def send_now(stream: trio.SocketStream, data: bytes | bytearray | memoryview) -> memoryview:
    """Write what the kernel takes now, without waiting or yielding; the rest (empty
    when all went)."""
    view = memoryview(data)
    return view[_write(stream.socket.fileno(), view):]


async def receive_some(stream: trio.SocketStream, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` bytes; b"" at the end of the stream."""
    data = receive_now(stream, max_bytes)
    if data is not None:
        await _maybe_yield()
        return data
    return await receive_after_wait(stream, max_bytes)


def receive_now(stream: trio.SocketStream, max_bytes: int) -> bytes | None:
    """Up to ``max_bytes`` bytes already there (b"" at the end of the stream), or None
    when none are, without waiting or yielding."""
    return _read(stream.socket.fileno(), max_bytes)


async def receive_after_wait(stream: trio.SocketStream, max_bytes: int) -> bytes:
    """As ``receive_some``, for bytes that cannot have arrived yet (a worker's answer
    just after the request went out): waits first, saving a read that would fail."""
    while True:
        await trio.lowlevel.wait_readable(stream.socket)
        data = _read(stream.socket.fileno(), max_bytes)
        if data is not None:
            return data


def _write(fd: int, view: memoryview) -> int:
    """Bytes the kernel took now (0 when it would block)."""
    try:
        return os.write(fd, view)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise _stream_error(exc) from exc


def _read(fd: int, max_bytes: int) -> bytes | None:
    """Bytes there now; None when none are (it would block)."""
    try:
        return os.read(fd, max_bytes)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise _stream_error(exc) from exc


def _stream_error(exc: OSError) -> trio.TrioException:
    if exc.errno == errno.EBADF:  # fileno() is -1 once closed
        return trio.ClosedResourceError("the socket was closed")
    return trio.BrokenResourceError(f"socket error: {exc}")


async def _maybe_yield() -> None:
    global _streak
    _streak += 1
    if _streak >= YIELD_EVERY:
        _streak = 0
        await trio.lowlevel.checkpoint()
