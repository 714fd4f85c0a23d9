"""The rps strategy's decisions (faucet.autoscale), pure: samples in, decisions out, the
clock a number the test moves."""

from __future__ import annotations

import pytest

from faucet.pool.autoscale import (
    COOLDOWN,
    RATE_WINDOW,
    Autoscaler,
    Decision,
    Phase,
    Policy,
    RateMeter,
    Sample,
    WindowMax,
    WorkerSample,
)

TICK = 0.1


class Pool:
    """A pool as the scaler leaves it after each decision, its load driven by the test:
    started workers are spawned but offline until ``online``; stopped ones exit at once
    unless ``hold_exit``. Each request served costs its worker ``cost`` seconds of work,
    and a worker with a request in flight is busy for the whole tick."""

    def __init__(self, policy: Policy, hold_exit: bool = False, cost: float = 0.05):
        self.scaler = Autoscaler(policy)
        count = policy.max_workers
        self.online = [False] * count
        self.inflight = [0] * count
        self.served = [0] * count
        self.busy = [0.0] * count
        self.work = [0.0] * count  # seconds of work served since the last tick
        self.generation = [0] * count
        self.restarts = [0] * count
        self.queued = 0
        self.now = 0.0
        self.hold_exit = hold_exit
        self.cost = cost

    def sample(self) -> Sample:
        return Sample(self.now, self.queued, tuple(
            WorkerSample(online=self.online[i], inflight=self.inflight[i], sessions=0,
                         served=self.served[i], incarnation=self.generation[i],
                         restarts=self.restarts[i], busy=self.busy[i])
            for i in range(len(self.online))))

    def tick(self) -> Decision:
        """One decision at the current time, carried out; then the time moves on."""
        for index, work in enumerate(self.work):
            self.busy[index] += TICK if self.inflight[index] else min(TICK, work)
        self.work = [0.0] * len(self.work)
        decision = self.scaler.decide(self.sample())
        for index in decision.start:
            self.generation[index] += 1
        for index in decision.drain:
            self.online[index] = False
        for index in decision.resume:
            self.online[index] = True
        for index in decision.stop:
            self.online[index] = False
            if not self.hold_exit:
                self.scaler.exited(index)
        self.now = round(self.now + TICK, 6)
        return decision

    def run(self, seconds: float, rate: float = 0.0) -> list[Decision]:
        """Ticks for ``seconds`` with ``rate`` requests per second served by the online
        workers in turn; the decisions that did something."""
        decisions, owed = [], 0.0
        for _ in range(round(seconds / TICK)):
            owed += rate * TICK
            online = [i for i, up in enumerate(self.online) if up]
            while owed >= 1 and online:
                index = online[int(owed) % len(online)]
                self.served[index] += 1
                self.work[index] += self.cost
                owed -= 1
            if decision := self.tick():
                decisions.append(decision)
        return decisions

    def bring_online(self) -> None:
        """Every running worker has come online."""
        for index in self.scaler.running():
            self.online[index] = True

    def phases(self) -> list[Phase]:
        return list(self.scaler.phases)


def started_pool(policy: Policy, **kwargs) -> Pool:
    """A pool whose first workers are online, past the cooldown of their start."""
    pool = Pool(policy, **kwargs)
    pool.tick()
    pool.bring_online()
    pool.run(COOLDOWN)
    return pool


def drained(decisions: list[Decision]) -> list[int]:
    return [index for decision in decisions for index in decision.drain]


def test_rate_meter_counts_the_last_window_only():
    meter = RateMeter(window=1.0)
    meter.record(0.0, 0)
    meter.record(0.2, 4)
    assert meter.rate() == 4.0  # under a window recorded: still divided by the window
    for step in range(1, 11):
        meter.record(0.2 + step / 10, 4 + 2 * step)  # 20 per second
    assert meter.rate() == pytest.approx(20.0)
    meter.record(2.5, 24)
    meter.record(3.5, 24)
    assert meter.rate() == 0.0


def test_window_max_keeps_the_peak_for_its_window():
    peak = WindowMax(window=30.0)
    peak.record(0.0, 4)
    peak.record(1.0, 1)
    peak.record(29.0, 2)
    assert peak.peak() == 4
    peak.record(30.5, 1)
    assert peak.peak() == 2
    peak.record(59.5, 1)
    assert peak.peak() == 1


def test_the_first_decision_starts_min_workers():
    pool = Pool(Policy(max_rps=10, min_workers=2, max_workers=4))
    assert pool.tick() == Decision(start=(0, 1))
    assert pool.phases() == [Phase.RUNNING] * 2 + [Phase.STOPPED] * 2


def test_a_rate_above_max_rps_starts_the_workers_it_needs_at_once():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=8, max_starting=4))
    starts = [d.start for d in pool.run(1.0, rate=35)]
    assert sum(len(s) for s in starts) == 3  # 35 req/s over 1 s needs 4 workers of 10
    assert pool.scaler.running() == [0, 1, 2, 3]
    pool.bring_online()
    pool.run(1.0, rate=35)
    assert pool.scaler.running() == [0, 1, 2, 3]  # steady: nothing more


def test_no_more_than_max_starting_start_at_once():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=8, max_starting=2))
    pool.run(1.0, rate=60)
    assert pool.scaler.running() == [0, 1, 2]  # needs 6: 2 starting
    pool.online[1] = True
    assert pool.run(TICK, rate=60) == [Decision(start=(3,))]  # one is up: the next starts
    pool.bring_online()
    assert pool.run(TICK, rate=60) == [Decision(start=(4, 5))]
    pool.bring_online()
    assert not pool.run(1.0, rate=60)


def test_the_rate_never_starts_more_than_workers():
    pool = started_pool(Policy(max_rps=1, min_workers=1, max_workers=3))
    pool.run(2.0, rate=50)
    assert pool.scaler.running() == [0, 1, 2]


def test_a_queue_starts_a_worker_then_waits_for_it_to_come_online():
    pool = started_pool(Policy(max_rps=100, min_workers=1, max_workers=4))
    pool.inflight[0] = 1
    pool.run(RATE_WINDOW)  # busy all along: the work is real
    pool.queued = 3
    assert pool.tick() == Decision(start=(1,))  # 3 waiting: at least one more
    assert not pool.run(2.0)  # still starting: the queue it will drain starts no other
    pool.bring_online()
    assert pool.tick() == Decision(start=(2,))  # online, and requests still wait


def test_the_queue_starts_workers_no_faster_than_the_cooldown():
    pool = started_pool(Policy(max_rps=100, min_workers=1, max_workers=4))
    pool.inflight[0] = 1
    pool.run(RATE_WINDOW)  # busy all along: the work is real
    pool.queued = 2
    assert pool.tick().start == (1,)
    started = pool.now - TICK
    pool.bring_online()  # up at once: the cooldown alone holds the next start
    while pool.now - started < COOLDOWN - 1e-9:
        assert not pool.tick().start
    assert pool.tick().start == (2,)


def test_a_queue_that_drains_starts_no_worker():
    pool = started_pool(Policy(max_rps=100, min_workers=1, max_workers=4))
    pool.inflight[0] = 1
    pool.run(RATE_WINDOW)  # busy all along: the work is real
    pool.queued = 30
    assert pool.tick().start == (1,)
    pool.bring_online()
    pool.inflight[1] = 1
    for queued in range(30, 0, -1):  # a backlog the two are working off
        pool.queued = queued
        assert not pool.tick()
    pool.queued += 1
    assert not pool.tick()  # grew again, but not above what it was a second ago
    # The same for a second: the two do not keep up.
    assert pool.run(COOLDOWN + TICK) == [Decision(start=(2,))]


def test_a_long_queue_starts_one_worker_per_max_rps_waiting():
    pool = started_pool(Policy(max_rps=5, min_workers=1, max_workers=8, max_starting=8))
    pool.inflight[0] = 1
    pool.run(RATE_WINDOW)  # busy all along: the work is real
    pool.queued = 12
    assert pool.tick().start == (1, 2, 3)


def test_an_idle_pool_drains_its_least_recently_busy_workers_after_the_grace():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=4,
                               scale_down_after=30, max_starting=4), hold_exit=True)
    pool.run(1.0, rate=35)
    pool.bring_online()
    pool.run(2.0, rate=35)
    pool.served[0] += 1  # worker 1 is the most recently busy
    pool.tick()  # the last tick that needs all 4
    assert not pool.run(30.0 - TICK)  # within the grace, nothing stops
    # Each goes 30 s after the pool last needed it (the rate falls over RATE_WINDOW).
    assert drained(pool.run(2.0)) == [3, 2, 1]
    assert pool.phases() == [Phase.RUNNING] + [Phase.STOPPING] * 3  # nothing in flight
    for index in (1, 2, 3):
        pool.scaler.exited(index)
    assert pool.phases() == [Phase.RUNNING] + [Phase.STOPPED] * 3


def test_a_draining_worker_is_stopped_only_once_its_requests_finish():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=2, scale_down_after=5))
    pool.run(1.0, rate=15)
    pool.bring_online()
    pool.inflight[1] = 1  # a long request on worker 2
    pool.run(1.0, rate=15)
    pool.inflight[0] = 1  # worker 1 busy too: the higher index goes
    assert drained(pool.run(7.0)) == [1]
    assert pool.phases()[1] is Phase.DRAINING and not pool.online[1]
    assert not pool.run(3.0)
    pool.inflight[1] = 0
    assert pool.tick() == Decision(stop=(1,))


def test_load_returning_takes_a_draining_worker_back_before_starting_another():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=3, scale_down_after=5))
    pool.run(1.0, rate=25)
    pool.bring_online()
    pool.inflight = [1, 1, 1]
    assert drained(pool.run(8.0)) == [2, 1]
    assert pool.run(1.0, rate=25)[0].resume == (1,)  # warm, not a new process
    assert pool.scaler.running() == [0, 1, 2]


def test_a_draining_worker_whose_process_exited_is_not_taken_back():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=2, scale_down_after=5),
                        hold_exit=True)
    pool.run(1.0, rate=15)
    pool.bring_online()
    pool.inflight = [1, 1]
    pool.run(6.0)
    assert pool.phases()[1] is Phase.DRAINING
    pool.restarts[1] += 1  # it crashed; its supervisor is restarting it
    pool.served[0] += 20
    decision = pool.tick()
    assert decision.resume == () and decision.start == ()  # its slot is still taken
    pool.inflight[1] = 0  # its requests failed with it
    assert pool.tick().stop == (1,)


def test_a_draining_worker_brought_back_online_by_its_supervisor_is_drained_again():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=2, scale_down_after=5))
    pool.run(1.0, rate=15)
    pool.bring_online()
    pool.inflight = [1, 1]
    pool.run(6.0)
    pool.generation[1] += 1
    pool.online[1] = True  # restarted after a crash, and online again
    assert pool.tick() == Decision(drain=(1,))


def test_a_surplus_worker_still_starting_is_stopped_without_draining():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=2, scale_down_after=5))
    pool.run(1.0, rate=15)
    assert pool.scaler.running() == [0, 1] and not pool.online[1]  # never came online
    decisions = pool.run(6.0)
    assert [(d.drain, d.stop) for d in decisions] == [((), (1,))]


def test_a_worker_still_stopping_is_not_started_again():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=2, scale_down_after=5),
                        hold_exit=True)
    pool.run(1.0, rate=15)
    pool.run(6.0)
    assert pool.phases()[1] is Phase.STOPPING
    assert not pool.run(1.0, rate=30)  # needs 3, but its port may still be taken
    pool.scaler.exited(1)
    assert pool.tick().start == (1,)


def test_a_steady_load_keeps_its_workers():
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=4, scale_down_after=5))
    pool.run(1.0, rate=18)
    pool.bring_online()
    assert not pool.run(60.0, rate=18)
    assert pool.scaler.running() == [0, 1]


def test_min_workers_zero_starts_one_for_a_queued_request_and_stops_it_when_idle():
    """Scale to zero (issue 17 item 4): nothing runs until a request waits; the first
    waiting request starts one worker at once; idle for scale_down_after, none again."""
    pool = Pool(Policy(max_rps=10, min_workers=0, max_workers=3, scale_down_after=2))
    assert pool.run(5) == [] and pool.scaler.running() == []
    pool.queued = 1  # a request waits in the dispatcher
    assert pool.tick() == Decision(start=(0,))
    pool.run(0.5)  # starting: the same request starts nothing more
    assert pool.scaler.running() == [0]
    pool.bring_online()
    pool.queued = 0
    pool.served[0] += 1
    decisions = pool.run(3)
    assert drained(decisions) == [0] and pool.phases() == [Phase.STOPPED] * 3


def clump(pool: Pool, count: int) -> Decision:
    """``count`` requests at once on worker 1: at the next tick it has one in flight and
    the rest wait; all are answered before the tick after."""
    pool.inflight[0], pool.queued = 1, count - 1
    decision = pool.tick()
    pool.inflight[0], pool.queued = 0, 0
    pool.served[0] += count
    pool.work[0] += count * pool.cost
    return decision


def test_clumps_of_cheap_requests_do_not_pin_the_pool():
    """Issue 18 item 17: 25 cheap 404s every 25 s (1.25 req/s on average) asked for every
    worker at each clump (25 req/s over a second, and a queue), and scale_down_after
    (30 s) kept them all. Their work, 75 ms per clump, keeps one worker busy 8% of one
    second: the pool stays at one worker."""
    pool = started_pool(Policy(max_rps=5, min_workers=1, max_workers=4, scale_down_after=30),
                        cost=0.003)
    decisions = []
    for _ in range(4):
        decisions += [d for d in [clump(pool, 25)] if d]
        decisions += pool.run(25.0)
    assert decisions == [] and pool.scaler.running() == [0]
    assert not pool.run(60.0, rate=18)  # cheap all along: 18 req/s is 5% of one worker
    assert pool.scaler.running() == [0]


def test_real_work_still_grows_the_pool_within_a_fraction_of_a_second():
    """100 req/s of 50 ms each: one worker is busy from the first request, so the second
    starts once it has been busy a quarter of a second, and the pool grows to what the
    rate asks for as the new workers come online and fill with work."""
    pool = started_pool(Policy(max_rps=10, min_workers=1, max_workers=8, max_starting=8))
    pool.inflight[0] = 1  # the burst's first request
    assert not pool.run(0.2, rate=100)
    assert pool.run(TICK, rate=100) == [Decision(start=(1,))]
    for _ in range(3):
        pool.run(0.5, rate=100)
        pool.bring_online()
        pool.inflight = [1 if up else 0 for up in pool.online]  # all kept busy
        pool.run(0.5, rate=100)
    assert pool.scaler.running() == list(range(8))


def test_workers_busy_a_quarter_of_their_time_may_grow_the_pool():
    pool = started_pool(Policy(max_rps=1, min_workers=1, max_workers=4, max_starting=4))
    pool.served[0] += 10  # a rate of 10 req/s asks for every worker; the work decides
    pool.busy[0] += 0.2  # busy a fifth of the last second: one worker is enough
    assert not pool.tick()
    pool.busy[0] += 0.2  # two fifths: worth two
    assert pool.tick() == Decision(start=(1,))
