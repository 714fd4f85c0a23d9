"""A request its client can give up: an HTTP/2 stream reset (RST_STREAM), or its
connection closing, while faucet still works on it.

The edge runs the request's handling inside ``scope`` and calls ``give_up`` when the
client resets the stream; the handling is then cancelled wherever it is (reading the
body, waiting in the queue, connecting to a worker), so a reset request never claims a
worker it no longer needs. Only between the moment the request starts to leave for the
worker and the worker's answer head (``committed``) is the cancel held back: R runs the
request anyway from there, and its slot must stay taken until R is done with it, or the
queue would hand R more work than it can take.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import trio


class ClientCancel:
    """One request's cancel by its client (see the module docstring)."""

    __slots__ = ("scope", "given_up", "finished", "on_finish", "_holds")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.given_up = False  # the client reset the stream or went away
        self.finished = False  # the request's handling has ended
        self.on_finish: Callable[[], None] | None = None  # the edge's bookkeeping
        self._holds = 0

    def give_up(self) -> None:
        """The client no longer wants the answer: cancel now, or once committed ends."""
        self.given_up = True
        if not self._holds:
            self.scope.cancel()

    @contextlib.contextmanager
    def committed(self) -> Iterator[None]:
        """While the request is with the worker: a give-up waits for the answer head.
        A give-up before it cancels at the first checkpoint inside (nothing is sent)."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if self.given_up and not self._holds:
                self.scope.cancel()

    def finish(self) -> None:
        """The handling ended (answered, failed or cancelled): tell the edge once."""
        if not self.finished:
            self.finished = True
            if self.on_finish is not None:
                self.on_finish()
