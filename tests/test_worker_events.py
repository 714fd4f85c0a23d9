"""The supervisor hands a worker's event lines and life steps to ``WorkerEvents``
(the stand-in worker, no R; the R end to end is in test_log_events_pg.py)."""

from __future__ import annotations

import logging
import uuid
from functools import partial

import trio

from faucet.config.settings import Config
from faucet.lifecycle.deploy import free_port
from faucet.pool.backend import Backend
from faucet.workers.app_events import WorkerEvents
from faucet.workers.supervisor import RestartPolicy, relay_output, supervise_worker
from tests.helpers import MARK, marked_processes, until
from tests.test_app_events import marker, r_fields
from tests.test_supervisor import Ceiling, LogWatch, spec


def recorder_for(recorded: list, worker_id: int = 1) -> WorkerEvents:
    return WorkerEvents(recorded.append, namespace="ns", version=None, worker_id=worker_id,
                        worker_route=None)


async def test_relay_records_event_lines_and_logs_only_the_rest():
    send, receive = trio.open_memory_channel[bytes](10)
    watch, recorded = LogWatch(), []
    lines = ["Running plumber API", marker(r_fields()), "{{ faucet_event }}: {broken", "bye"]
    text = "\n".join(lines).encode() + b"\n"
    async with send:
        await send.send(text[:30])  # a line split across reads
        await send.send(text[30:])
    await relay_output(receive, watch.logger, logging.WARNING, None, recorder_for(recorded))
    assert watch.lines == ["Running plumber API", "{{ faucet_event }}: {broken", "bye"]
    assert [event.message for event in recorded] == ["user 7 logged in"]


async def test_a_crashing_worker_records_start_online_exit_restart(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_EXIT_AFTER", "1")
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    backend, recorded = Backend(worker_id=2, port=free_port()), []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(
            supervise_worker, backend, spec(tmp_path),
            Config(startup_timeout=10, liveness_interval=0), worker_log=LogWatch().logger,
            policy=RestartPolicy(initial=0.1, rng=Ceiling()),
            events=recorder_for(recorded, worker_id=2)))
        with trio.fail_after(20):  # a guard against hanging, not a measure of speed
            await until(lambda: backend.online)
            async with await trio.open_tcp_stream("127.0.0.1", backend.port) as stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while await stream.receive_some():  # its one answer: then it exits
                    pass
            await until(lambda: [e.event_type for e in recorded].count("worker_online") == 2)
        nursery.cancel_scope.cancel()
    await until(lambda: not marked_processes(mark))
    assert [e.event_type for e in recorded] == [
        "worker_start", "worker_online", "worker_exit", "worker_restart",
        "worker_start", "worker_online"]
    start, online, exit_, restart, start2, online2 = recorded
    assert {e.worker_id for e in recorded} == {2}
    assert start.body["pid"] != start2.body["pid"]
    assert start.body["argv"][:1] == [str(spec(tmp_path).rscript)]
    assert online.body == {"port": backend.port, "pid": start.body["pid"]}
    assert exit_.body["status"] == "exit status 3" and exit_.body["returncode"] == 3
    assert exit_.body["stderr_tail"] == ["exiting after 1 requests"]
    assert restart.body == {"delay": 0.1, "restarts": 1}
    assert {e.parent_event_id for e in (online, exit_, restart)} == {start.event_id}
    assert online2.parent_event_id == start2.event_id
