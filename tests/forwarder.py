"""A TCP relay the tests can cut and restore, to play an unreachable PostgreSQL or a
network that drops, or freeze and thaw, to play a hung one (packets dropped, no FIN)."""

import threading

import trio


class Forwarder:
    """A TCP relay to ``host:port`` that the test can cut (resetting every connection and
    refusing new ones) and restore, or freeze (connections stay open, nothing passes
    either way: a network that hangs) and thaw (what was held passes on, in order), or
    retarget (a server that moved); it knows the local ports of its upstream connections,
    which is how the test finds faucet's backend in pg_stat_activity, and counts the
    connections it refused while cut (each one an attempt the client made)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._scopes: set[trio.CancelScope] = set()
        self.upstream_ports: set[int] = set()
        self.up = True
        self.refused = 0
        self._thawed = trio.Event()
        self._thawed.set()

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        self.up = False
        for scope in self._scopes:
            scope.cancel()

    def restore(self) -> None:
        self.up = True

    def freeze(self) -> None:
        self._thawed = trio.Event()

    def thaw(self) -> None:
        self._thawed.set()

    def retarget(self, host: str, port: int) -> None:
        """Relay new connections to ``host:port``."""
        self._target = (host, port)

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.up:
                self.refused += 1
                return
            try:
                server = await trio.open_tcp_stream(*self._target)
            except OSError:
                return  # nothing listens there (yet): the client sees its connection close
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    async with server:
                        port = server.socket.getsockname()[1]
                        self.upstream_ports.add(port)
                        try:
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._pipe, client, server, nursery.cancel_scope)
                                nursery.start_soon(self._pipe, server, client, nursery.cancel_scope)
                        finally:
                            self.upstream_ports.discard(port)
                finally:
                    self._scopes.discard(scope)

    async def _pipe(self, source, sink, done: trio.CancelScope) -> None:
        try:
            async for data in source:
                await self._thawed.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()


class ThreadedForwarder:
    """A Forwarder on a trio loop of its own thread, for synchronous tests (Playwright's
    sync API): ``with ThreadedForwarder(host, port) as forwarder: forwarder.port``."""

    def __init__(self, host: str, port: int) -> None:
        self.forwarder = Forwarder(host, port)
        self.port = 0
        self._token = None
        self._thread = None
        self._stop = None

    def __enter__(self) -> "ThreadedForwarder":
        ready = threading.Event()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                self.port = await nursery.start(self.forwarder.serve)
                self._token = trio.lowlevel.current_trio_token()
                self._stop = nursery.cancel_scope
                ready.set()

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        trio.from_thread.run_sync(self._stop.cancel, trio_token=self._token)
        self._thread.join(10)

    def _run(self, method, *args) -> None:
        trio.from_thread.run_sync(method, *args, trio_token=self._token)

    def cut(self) -> None:
        self._run(self.forwarder.cut)

    def restore(self) -> None:
        self._run(self.forwarder.restore)

    def freeze(self) -> None:
        self._run(self.forwarder.freeze)

    def thaw(self) -> None:
        self._run(self.forwarder.thaw)

    def retarget(self, host: str, port: int) -> None:
        self._run(self.forwarder.retarget, host, port)
