"""ETAs: when each queued and running job is expected to start and end, from running the policy
forward on the state as it stands (the code ``orch simulate`` replays traces with, core/replay.py).

The forward run knows what the policy knows and nothing more: no job arrives, a running job ends
when its estimate says (``RunningJob.expected_end``: at once when it overran), and a job started
on the way runs ``QueuedJob.ends_within`` its plan. A job with no estimate and no time limit runs
for ever as far as the forecast knows: it has no end event, so its ``end_s`` is None and so is
the ``start_s`` of every job that waits for what it holds. A running job that the forecast
preempts ends there with ``end_s`` None (it is requeued live, with a remaining time nobody
knows); a job started within the forecast and preempted is requeued in its old place with its
full estimate again (no checkpoint is assumed).

Cost: each instant is one ``decide`` over the queue, so a forecast costs about one control step
per start and end it foresees. ``max_instants`` bounds it (jobs not started within it get None),
and ``until`` stops it as soon as the jobs asked about have started.
PURE: no Ray, no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from orchestrator.core.allocator import Plan
from orchestrator.core.policy.state import QueuedJob, QueueState
from orchestrator.core.replay import END, Replay

# Instants a forecast runs at most: about two per job (its start and its end) for 1,000 queued jobs.
MAX_INSTANTS = 2500


@dataclass(frozen=True)
class Forecast:
    """A job's expected start and end, absolute (the state's clock); None where unknown."""

    start_s: float | None
    end_s: float | None

    def to_json(self, now: float) -> dict[str, float | None]:
        """``start_in_s``/``end_in_s`` of the ``estimate`` JSON: seconds from ``now``."""
        return {"start_in_s": _after(self.start_s, now), "end_in_s": _after(self.end_s, now)}


def forecast(state: QueueState, policy: str = "orch", until: Iterable[str] | None = None,
             max_instants: int = MAX_INSTANTS) -> dict[str, Forecast]:
    """Each queued and running job of ``state`` -> its ``Forecast``, by running ``policy``
    forward from ``state.now`` (``state`` is left as it is). ``until``: stop once these jobs
    have started (the others may then be unknown); ``max_instants`` bounds the cost."""
    run = _Forward(state, policy)
    wanted = set(until) if until is not None else None
    done = None if wanted is None else (lambda _now: all(run.starts.get(name) is not None for name in wanted))
    run.schedule(state.now)  # what starts at once
    if done is None or not done(state.now):
        run.run(done, max_instants)
    names = [*state.running, *(job.id for job in state.pending.in_arrival_order())]
    return {name: Forecast(run.starts.get(name), run.ends.get(name)) for name in names}


class _Forward(Replay):
    def __init__(self, state: QueueState, policy: str):
        now = state.now
        copy = QueueState.build(state.snapshot, state.pending.in_arrival_order(), state.running.values(), now)
        super().__init__(copy, policy)
        self.queued: dict[str, QueuedJob] = {job.id: job for job in state.pending.in_arrival_order()}
        self.attempts: dict[str, int] = {}
        self.starts: dict[str, float | None] = {}
        self.ends: dict[str, float | None] = {}
        for job in state.running.values():
            self.starts[job.id] = job.started
            self._expect(job.id, job.expected_end(now))

    def _expect(self, name: str, end: float | None) -> None:
        """``name`` ends at ``end``; None: for ever, as far as anyone knows (no end event)."""
        self.ends[name] = end
        if end is not None:
            self.push(end, END, len(self.events), name, self.attempts.get(name, 0))

    def attempt(self, name: str) -> int:
        return self.attempts.get(name, 0)

    def end(self, name: str, now: float) -> None:
        self.state.stop(name)

    def start(self, name: str, plan: Plan, now: float) -> None:
        job = self.queued[name]
        self.state.start(name, plan, started=now)
        self.starts.setdefault(name, now)
        within = job.ends_within(plan)
        self._expect(name, None if within is None else now + within)

    def preempt(self, name: str, now: float) -> None:
        self.state.stop(name)
        self.attempts[name] = self.attempts.get(name, 0) + 1
        self.ends[name] = None
        job = self.queued.get(name)
        if job is not None:  # started within the forecast: requeued in its old place
            self.state.enqueue(job)


def _after(time: float | None, now: float) -> float | None:
    return None if time is None else round(max(time - now, 0.0), 1)
