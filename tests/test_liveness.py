"""The hung-worker rule (pure), Backend's phases and hooks, and the check's two
readings of a real process: the kernel's stopped state and a probe over loopback."""

import os
import signal
import subprocess
from functools import partial

import trio

from faucet.config.app_kinds import KINDS
from faucet.pool.backend import Backend
from faucet.pool.liveness import STOPPED, Probe, Watch
from faucet.workers.supervisor import probe, process_stopped


def watch(after: int = 2) -> tuple[Watch, list[str]]:
    alarms: list[str] = []
    return Watch(after, alarms.append), alarms


def test_response_timeouts_in_a_row_make_a_worker_unhealthy():
    w, alarms = watch(2)
    w.timed_out()
    assert alarms == []
    w.timed_out()
    assert alarms == ["2 requests in a row got no answer within response_timeout"]
    w.timed_out()
    assert len(alarms) == 1 and w.verdict == alarms[0]  # condemned once


def test_an_answer_between_timeouts_clears_them():
    w, alarms = watch(2)
    for _ in range(5):
        w.timed_out()
        w.answered()
    assert alarms == [] and w.timeouts == 0


def test_a_stopped_process_fails_checks_busy_or_not():
    w, alarms = watch(2)
    w.stopped()
    w.stopped()
    assert alarms == [f"{STOPPED} (2 checks in a row)"]


def test_a_silent_probe_counts_only_when_the_worker_cannot_have_been_busy():
    w, alarms = watch(2)
    for _ in range(4):  # a request reached it during the probe, or a Shiny session
        w.probed(Probe.SILENT, maybe_busy=True)
    assert alarms == [] and w.failed_checks == 0
    w.probed(Probe.SILENT, maybe_busy=False)
    w.probed(Probe.SILENT, maybe_busy=True)  # inconclusive: neither fails nor clears
    w.probed(Probe.SILENT, maybe_busy=False)
    assert alarms == [f"{Probe.SILENT.value} (2 checks in a row)"]


def test_a_refused_probe_fails_even_when_the_worker_may_be_busy():
    w, alarms = watch(2)
    w.probed(Probe.REFUSED, maybe_busy=True)
    w.probed(Probe.REFUSED, maybe_busy=True)
    assert alarms == [f"{Probe.REFUSED.value} (2 checks in a row)"]


def test_an_answered_probe_clears_failed_checks_and_timeouts():
    w, alarms = watch(2)
    w.stopped()
    w.timed_out()
    w.probed(Probe.ANSWERED, maybe_busy=False)
    w.stopped()
    w.timed_out()
    assert alarms == []


def test_unhealthy_after_one():
    w, alarms = watch(1)
    w.probed(Probe.SILENT, maybe_busy=False)
    assert alarms == [f"{Probe.SILENT.value} (1 checks in a row)"]


def test_the_proxys_reports_reach_the_running_process_watch():
    backend = Backend(worker_id=1, port=1)
    backend.note_timeout()  # no process watched: nothing to report to
    process_watch, alarms = watch(2)
    backend.spawned(pid=1, watch=process_watch)
    backend.note_timeout()
    backend.note_answer()
    backend.note_timeout()
    assert alarms == [] and backend.watch.timeouts == 1
    for _ in range(5):
        backend.lease(slow=False)
    for _ in range(4):
        backend.release(slow=False)
    assert backend.acquired == 5


def test_process_stopped_reads_the_kernels_state():
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert not process_stopped(child.pid)
        os.kill(child.pid, signal.SIGSTOP)
        # The stop is delivered asynchronously: wait for the kernel to report it.
        os.waitpid(child.pid, os.WUNTRACED)
        assert process_stopped(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_stopped(child.pid)  # gone: nothing to report


async def test_probe_answered_silent_and_refused():
    async def answer(stream):
        await stream.receive_some(1024)
        await stream.send_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    async def never_answer(stream):
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        answering, silent = [
            (await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
             )[0].socket.getsockname()[1] for handler in (answer, never_answer)]
        with trio.fail_after(5):
            assert await probe(answering) is Probe.ANSWERED
        with trio.move_on_after(0.1) as waited:
            await probe(silent)
        assert waited.cancelled_caught  # the caller's deadline decides when it is SILENT
        nursery.cancel_scope.cancel()
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert await probe(port) is Probe.REFUSED


def test_only_kinds_with_sessions_are_busy_between_requests():
    busy = {name for name, kind in KINDS.items() if kind.sessions}
    assert busy == {"shiny", "quarto-shiny"}
