"""faucet.backend: one worker's state machine, changed only through its own methods."""

import pytest

from faucet.pool.backend import RECYCLED, Backend, IllegalTransition, Phase

CHANGES = {  # each change, applied from every phase: the phase it leads to, or None
    "spawned": {Phase.STOPPED: Phase.STARTING, Phase.RESTARTING: Phase.STARTING},
    "ready": {Phase.STARTING: Phase.ONLINE},
    "condemned": {Phase.STARTING: Phase.UNHEALTHY, Phase.ONLINE: Phase.UNHEALTHY},
    "exited": {Phase.STARTING: Phase.RESTARTING, Phase.ONLINE: Phase.RESTARTING,
               Phase.UNHEALTHY: Phase.RESTARTING, Phase.STOPPING: Phase.STOPPING},
    "stopping": {phase: Phase.STOPPING for phase in Phase if phase is not Phase.STOPPING},
    "recycle": {Phase.ONLINE: Phase.ONLINE},  # routing only: its process goes on
}
ARGS = {"spawned": (7,), "condemned": ("hung",), "exited": (None,), "stopping": ("why",),
        "recycle": ("max_requests",)}
ROUTES = {  # a way to reach each phase from a new backend
    Phase.STOPPED: [],
    Phase.STARTING: [("spawned", 7)],
    Phase.ONLINE: [("spawned", 7), ("ready",)],
    Phase.UNHEALTHY: [("spawned", 7), ("ready",), ("condemned", "hung")],
    Phase.RESTARTING: [("spawned", 7), ("exited", "crashed")],
    Phase.STOPPING: [("spawned", 7), ("stopping", "why")],
}


def backend_in(phase: Phase) -> tuple[Backend, list[str]]:
    """A backend brought to ``phase`` by its methods, and a log of its routing changes."""
    flips: list[str] = []
    backend = Backend(worker_id=1, port=1)
    backend.on_change = lambda: flips.append("online" if backend.online else "offline")
    for name, *args in ROUTES[phase]:
        getattr(backend, name)(*args)
    assert backend.phase is phase
    return backend, flips


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("phase", list(Phase))
def test_every_change_from_every_phase_is_allowed_or_refused(change, phase):
    backend, _ = backend_in(phase)
    to = CHANGES[change].get(phase)
    if to is None:
        with pytest.raises(IllegalTransition):
            getattr(backend, change)(*ARGS.get(change, ()))
        assert backend.phase is phase  # a refused change changes nothing
    else:
        getattr(backend, change)(*ARGS.get(change, ()))
        assert backend.phase is to


def test_online_only_when_the_process_is_online_and_nothing_holds_it():
    backend, flips = backend_in(Phase.STOPPED)
    backend.spawned(pid=7)
    assert not backend.online and backend.incarnation == 1
    backend.ready()
    assert backend.online and flips == ["online"]
    backend.drain("scaled down")
    assert not backend.online and backend.status == "draining (scaled down)"
    backend.exited("exited (signal 9)")  # the drained worker's process restarts
    backend.spawned(pid=8)
    backend.ready()
    assert not backend.online and backend.incarnation == 2  # still drained
    backend.resume()
    assert backend.online and flips == ["online", "offline", "online"]


def test_a_verdict_is_kept_as_the_last_failure_and_an_exit_names_its_own():
    backend, flips = backend_in(Phase.ONLINE)
    backend.condemned("5 requests in a row got no answer")
    backend.exited("exited (signal 15)")  # the stop that follows a verdict
    assert backend.last_failure == "5 requests in a row got no answer"
    backend.spawned(pid=8)
    backend.ready()
    backend.exited("exited (exit status 3)")
    assert backend.last_failure == "exited (exit status 3)" and backend.restarts == 0
    backend.restarting()
    assert backend.restarts == 1 and flips == ["online", "offline", "online", "offline"]


def test_stopping_on_purpose_ends_stopped_with_its_reason_and_no_restart():
    backend, _ = backend_in(Phase.ONLINE)
    backend.stopping("scaled down")
    backend.exited(None)  # the supervisor's cleanup while it is stopped
    assert backend.phase is Phase.STOPPING and backend.status == "stopping (scaled down)"
    backend.stopped()
    assert (backend.phase, backend.pid, backend.status) == (
        Phase.STOPPED, None, "stopped (scaled down)")
    backend.resume()  # started again by its pool
    backend.spawned(pid=9)
    backend.ready()
    assert backend.online and backend.state()["state"] == "online"


def test_counters_change_through_leases_and_sessions():
    backend, _ = backend_in(Phase.ONLINE)
    backend.lease(slow=True)
    backend.lease(slow=False)
    backend.release(slow=True)
    backend.session_opened()
    assert (backend.inflight, backend.slow_inflight, backend.served, backend.acquired,
            backend.sessions) == (1, 0, 1, 2, 1)
    backend.session_closed()
    assert backend.sessions == 0


def test_a_recycled_worker_serves_on_until_its_successor_takes_its_place():
    backend, flips = backend_in(Phase.ONLINE)
    told = []
    backend.on_event = lambda b, change, detail: told.append((change, detail))
    backend.lease(slow=False)
    backend.release(slow=False)
    with pytest.raises(IllegalTransition):
        backend.successor(port=2)  # not due
    backend.recycle("served 100 requests")
    assert (backend.online, backend.held, backend.recycles) == (True, None, 1)
    assert backend.recycling == "served 100 requests" and flips == ["online"]
    assert told == [("recycled", "served 100 requests")]
    new = backend.successor(port=2)
    assert (new.worker_id, new.index, new.port, new.phase, new.online) == (
        1, 0, 2, Phase.STOPPED, False)
    assert (new.served, new.recycles, new.restarts, new.incarnation) == (1, 1, 0, 1)
    assert new.on_event is backend.on_event and new.recycling is None
    new.spawned(pid=8)
    new.ready()  # a process of its own: the next incarnation
    assert new.online and new.incarnation == 2
    backend.drain(RECYCLED)  # it has the place now: the old one drains, then stops
    assert backend.status == "draining (recycled)" and flips == ["online", "offline"]
    backend.stopping(RECYCLED)
    backend.exited(None)
    backend.stopped()
    assert backend.status == "stopped (recycled)" and backend.restarts == 0


def test_only_an_online_worker_nothing_holds_is_recycled_and_only_once():
    backend, _ = backend_in(Phase.STARTING)
    with pytest.raises(IllegalTransition):
        backend.recycle("served 100 requests")
    backend.ready()
    backend.drain("scaled down")
    with pytest.raises(IllegalTransition):
        backend.recycle("served 100 requests")
    backend.resume()
    backend.recycle("served 100 requests")
    with pytest.raises(IllegalTransition):
        backend.recycle("served 100 requests")  # its successor is already on its way
    assert backend.recycles == 1


def test_each_finished_request_is_told_to_on_served():
    backend, _ = backend_in(Phase.ONLINE)
    served = []
    backend.on_served = lambda: served.append(backend.served)
    for _ in range(3):
        backend.lease(slow=False)
        backend.release(slow=False)
    assert served == [1, 2, 3]


def test_busy_seconds_count_the_time_with_a_request_in_flight_once():
    now = [10.0]
    backend = Backend(worker_id=1, port=1, clock=lambda: now[0])
    backend.lease(slow=True)
    now[0] = 10.5
    backend.lease(slow=False)  # overlapping: the same stretch of work
    now[0] = 11.0
    backend.release(slow=False)
    assert backend.busy_seconds() == 1.0  # still busy: the stretch so far counts
    now[0] = 12.0
    backend.release(slow=True)
    now[0] = 20.0  # idle meanwhile
    assert backend.busy_seconds() == 2.0
    backend.lease(slow=True)
    now[0] = 20.25
    backend.release(slow=True)
    assert backend.busy_seconds() == 2.25
