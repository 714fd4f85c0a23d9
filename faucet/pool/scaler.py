"""An ``rps`` pool's workers, started and stopped with the load.

One task per autoscaled app, started from ``app.serve``'s front nursery in place of the
fixed pool's supervisors. Every ``TICK`` it samples the dispatcher (its queue and each
backend's counters), asks ``autoscale.Autoscaler`` what to do, and does it. Each running
worker is ``supervisor.supervise_worker`` inside a cancel scope of its own, in a nursery
this task owns: cancelling the scope stops the worker's process group (SIGTERM, SIGKILL
after a grace) as a shutdown does. Draining is routing only: the worker is offline for the
dispatcher until its requests have finished.
"""

from __future__ import annotations

import logging

import trio

from faucet.logs import target_label
from faucet.pool.autoscale import Autoscaler, Decision, Policy, Sample, WorkerSample
from faucet.pool.backend import Backend
from faucet.pool.dispatch import Dispatcher

log = logging.getLogger("faucet.scaler")
TICK = 0.1  # seconds between two looks at the load; a worker takes ~0.6 s to start
SCALED_DOWN = "scaled down"  # why its workers are drained or stopped, as health shows it


def sample_pool(dispatcher: Dispatcher, now: float) -> Sample:
    return Sample(now, dispatcher.queued(), tuple(
        WorkerSample(b.online, b.inflight, b.sessions, b.served, b.incarnation, b.restarts,
                     b.busy_seconds())
        for b in dispatcher.backends))


async def scale_workers(dispatcher: Dispatcher, policy: Policy, supervise, *,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the pool until cancelled; started once its first ``min_workers`` are spawned.
    ``supervise(backend, task_status=...)`` runs one worker until cancelled (which stops
    its process group), started once its process is spawned."""
    pool = _Pool(dispatcher, Autoscaler(policy), supervise)
    for backend in dispatcher.backends:
        backend.stopping(SCALED_DOWN)
        backend.stopped()
    async with trio.open_nursery() as nursery:
        while True:
            await pool.tick(nursery)
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(TICK)


class _Pool:
    """One autoscaled app: its dispatcher, the decisions, each running worker's scope."""

    def __init__(self, dispatcher: Dispatcher, autoscaler: Autoscaler, supervise):
        self.dispatcher = dispatcher
        self.autoscaler = autoscaler
        self.supervise = supervise
        self.scopes: dict[int, trio.CancelScope] = {}

    async def tick(self, nursery: trio.Nursery) -> None:
        """Decide and act. Routing changes and stops come before the first checkpoint, so
        no request is handed to a worker between the sample and its drain."""
        sample = sample_pool(self.dispatcher, trio.current_time())
        decision = self.autoscaler.decide(sample)
        if not decision:
            return
        self._log(decision, sample)
        backends = self.dispatcher.backends
        for index in decision.drain:
            backends[index].drain(SCALED_DOWN)
        for index in decision.resume:
            backends[index].resume()
        for index in decision.stop:
            backends[index].stopping(SCALED_DOWN)
            self.scopes.pop(index).cancel()
        for index in decision.start:
            await nursery.start(self._run, backends[index])

    async def _run(self, backend: Backend, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Supervise one worker until its scope is cancelled (which stops its process group),
        then mark it stopped."""
        index = backend.index
        scope = self.scopes[index] = trio.CancelScope()
        backend.resume()
        with scope:
            await self.supervise(backend, task_status=task_status)
        self.dispatcher.backends[index].stopped()  # a recycle may have replaced it
        self.autoscaler.exited(index)

    def _log(self, decision: Decision, sample: Sample) -> None:
        load = (f"{self.autoscaler.rate:.1f} req/s, {self.autoscaler.busy:.1f} workers busy, "
                f"{sample.queued} queued; now "
                f"{len(self.autoscaler.running())} of {len(sample.workers)} running")
        for verb, indices in (("starting", decision.start), ("taken back", decision.resume),
                              ("draining", decision.drain), ("stopping", decision.stop)):
            for index in indices:
                backend = self.dispatcher.backends[index]
                log.info("%s %s (rps autoscaling: %s)",
                         target_label(backend.worker_id, backend.route), verb, load)
