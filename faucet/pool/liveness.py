"""When a worker counts as hung: the evidence and the rule (pure: no I/O, no trio).

R serves one request at a time, so a worker that is slow to answer may be busy rather
than hung; the rule only counts evidence that busy work cannot explain. Evidence comes
from two places:

- the proxy: each request the worker did not answer within ``response_timeout`` (the
  client got a 504), and each answer;
- the supervisor's check of an online worker every ``liveness_interval``: the kernel
  says the process is stopped (SIGSTOP, a debugger), or a probe (a connection and a tiny
  request) is refused or goes unanswered for ``liveness_timeout``. A worker with requests
  in flight is not probed, and silence counts only when the worker cannot have been busy:
  no request reached it during the probe and its kind has no work faucet cannot see
  (a Shiny session computes between HTTP requests).

``unhealthy_after`` response timeouts in a row, or as many failed checks in a row, make
the worker unhealthy; any answer (to a client or to a probe) clears both counts.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

STOPPED = "its process is stopped (SIGSTOP or a debugger)"


class Probe(Enum):
    """How a worker met one liveness probe; a failure's value says what went wrong."""

    ANSWERED = "answered"
    REFUSED = "refused the probe's connection or closed it unanswered"
    SILENT = "did not answer a probe within liveness_timeout"


class Watch:
    """One worker process's evidence. ``alarm(reason)`` is called once, when the
    evidence first makes the worker unhealthy; ``verdict`` keeps the reason."""

    def __init__(self, unhealthy_after: int, alarm: Callable[[str], None]):
        self.unhealthy_after = unhealthy_after
        self._alarm = alarm
        self.timeouts = 0  # requests in a row with no answer within response_timeout
        self.failed_checks = 0  # conclusive checks in a row that failed
        self.verdict: str | None = None

    def answered(self) -> None:
        """The worker answered a request or a probe: whatever held it is over."""
        self.timeouts = self.failed_checks = 0

    def timed_out(self) -> None:
        """A request got no answer within response_timeout."""
        self.timeouts += 1
        if self.timeouts >= self.unhealthy_after:
            self._condemn(f"{self.timeouts} requests in a row got no answer within "
                          "response_timeout")

    def stopped(self) -> None:
        """A check found the process stopped: busy or not, it serves nobody."""
        self._check_failed(STOPPED)

    def probed(self, outcome: Probe, *, maybe_busy: bool) -> None:
        """A probe's outcome. ``maybe_busy``: the worker may have been busy with work
        during the probe (a request reached it meanwhile, or its kind computes between
        requests), so silence proves nothing; a refused connection still does."""
        if outcome is Probe.ANSWERED:
            self.answered()
        elif outcome is Probe.REFUSED or not maybe_busy:
            self._check_failed(outcome.value)

    def _check_failed(self, what: str) -> None:
        self.failed_checks += 1
        if self.failed_checks >= self.unhealthy_after:
            self._condemn(f"{what} ({self.failed_checks} checks in a row)")

    def _condemn(self, reason: str) -> None:
        if self.verdict is None:
            self.verdict = reason
            self._alarm(reason)
