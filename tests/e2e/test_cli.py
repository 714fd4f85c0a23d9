"""The command line as a user runs it: exit codes, messages, signals, no leftovers."""

import signal
import socket
import time

import httpx

from tests.helpers import (
    PLUMBER,
    leftover_processes,
    run_to_exit,
    served,
    wait_for_line,
    wait_until,
)


def plumber_faucet(workers: int, *args: str):
    """``faucet start`` on the Plumber example, yielded once every worker is online."""
    return served("start", "--dir", str(PLUMBER), "--workers", str(workers), *args,
                  online=workers)


def inflight(url: str) -> int:
    """Requests in flight at faucet's workers, from its health endpoint."""
    health = httpx.get(url + "/__faucet__/health").json()
    return sum(worker["inflight"] for worker in health["workers"])


def refuses_connections(port: int) -> bool:
    """Whether nothing accepts on ``port`` (a connect that lands in the backlog of a
    listener being closed is reset instead of refused: the same answer)."""
    try:
        socket.create_connection(("127.0.0.1", port)).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


def answered(sock: socket.socket) -> bool:
    """Whether anything came back on ``sock`` yet: bytes, or the connection's end."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except ConnectionError:
        pass
    return True


def test_sigterm_exits_0_and_leaves_no_r_process():
    with plumber_faucet(2) as faucet:
        faucet.proc.send_signal(signal.SIGTERM)
        assert faucet.proc.wait(timeout=30) == 0
        # faucet waits for its workers before it exits: none may be left at that moment.
        assert leftover_processes(faucet.proc) == []


def test_second_signal_forces_an_immediate_stop():
    with plumber_faucet(1, "--shutdown-timeout", "60") as faucet:
        proc = faucet.proc
        client = socket.create_connection(("127.0.0.1", faucet.port))
        client.sendall(b"GET /sleep?s=30 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: inflight(faucet.url) == 1, "the request in flight", timeout=10)
        proc.send_signal(signal.SIGINT)
        wait_for_line(proc, "SIGINT received: shutting down (graceful)")
        wait_until(lambda: refuses_connections(faucet.port), "faucet stops accepting",
                   timeout=10)
        # Graceful: no longer accepting, yet still draining the slow request.
        assert proc.poll() is None and not answered(client)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        assert leftover_processes(proc) == []
        client.close()


def test_failed_start_up_leaves_no_r_process():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit("start", "--dir", str(PLUMBER), "--workers", "2",
                             "--host", f"127.0.0.1:{port}")  # no processes left: checked there
        assert result.returncode == 2
        assert f"host = '127.0.0.1:{port}': cannot listen there" in result.stderr


def test_workers_die_with_faucet_even_on_sigkill():
    with plumber_faucet(2) as faucet:
        proc = faucet.proc
        workers = leftover_processes(proc)
        assert len(workers) == 2
        proc.kill()  # no chance to clean up: the kernel's parent-death signal must do it
        proc.wait()
        wait_until(lambda: not leftover_processes(proc), "the workers gone", timeout=10)
