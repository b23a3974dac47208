"""``orch simulate``: replay a trace through the allocator and queue policy in simulated time.

No Ray and no sleeping: a heap of arrival and finish events drives a clock;
at each event time the simulation asks ``queue.decide`` (the same code the
control plane runs) and applies its decision to a ``QueueState``: admitted
jobs take their plan's resources, finished jobs give them back, preempted
jobs are requeued in their old place and lose the work since they started,
or since their last ``checkpoint_s`` multiple when the trace line has one.
Preemption is instant here; live, a victim stops after a checkpoint.

Utilization is busy resource-seconds over capacity times makespan, taken per
resource kind the cluster has (CPU, GPU, TPU: each normalised by its own
capacity, so 8 GPUs weigh as much as 512 CPUs) and averaged over those kinds;
``utilization_by_resource`` has each kind. A queue's ``mean_usage`` is its
share of that same figure (the queues' shares add up to ``utilization``).
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from orchestrator.core import allocator, hardware
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.state import QueuedJob, QueueState
from orchestrator.core.snapshot import EPS, ClusterSnapshot
from orchestrator.core.spec import JobSpec

KINDS = (hardware.CPU, hardware.GPU, hardware.TPU)
# Rounds of decide at one instant: each round that preempts frees resources for the next.
MAX_ROUNDS = 1000

@dataclass(frozen=True)
class TraceJob:
    """A trace line with its job spec built."""

    name: str
    job_class: str
    submit_s: float
    runtime_s: float
    spec: JobSpec
    checkpoint_s: float | None = None


@dataclass
class _Run:
    """A trace job's progress through the simulation."""

    job: TraceJob
    seq: int
    remaining: float
    attempt: int = 0
    started: float | None = None  # the current attempt's start
    first_start: float | None = None
    finish: float | None = None


@dataclass
class _Books:
    """Integrals over simulated time: busy resource-seconds per queue and kind, and borrowing peaks."""

    busy: dict[str, dict[str, float]] = field(default_factory=dict)
    max_borrowed: dict[str, dict[str, float]] = field(default_factory=dict)
    preemptions: int = 0


def simulate(snapshot: ClusterSnapshot, trace: Iterable[TraceJob], policy: str = "orch",
             on_step: Callable[[float, QueueState], None] | None = None) -> dict[str, Any]:
    """Replay ``trace`` on ``snapshot`` (all free) under ``policy``; SPEC.md's ``orch simulate --json``.

    ``on_step(now, state)`` runs after each instant's decisions are applied
    (tests check invariants there, e.g. with ``check_invariants``). Jobs that
    can never run on the cluster are left out and counted in ``rejected``.
    """
    began = time.perf_counter()
    simulation = _Simulation(snapshot, list(trace), policy, on_step)
    simulation.run()
    report = simulation.report()
    report["wall_s"] = round(time.perf_counter() - began, 3)
    return report


class _Simulation:
    def __init__(self, snapshot: ClusterSnapshot, trace: list[TraceJob], policy: str,
                 on_step: Callable[[float, QueueState], None] | None):
        self.empty, self.policy, self.on_step = snapshot, policy, on_step
        self.state = QueueState(snapshot)
        self.books = _Books()
        self.runs: dict[str, _Run] = {}
        self.rejected: list[str] = []
        self.feasible: dict[tuple, bool] = {}  # job shape -> whether it fits the empty cluster
        self.events: list[tuple[float, int, int, str, int]] = []  # (time, finish=0/arrival=1, seq, job, attempt)
        for seq, job in enumerate(sorted(trace, key=lambda j: j.submit_s)):
            if job.name in self.runs:
                raise ValueError(f"trace job {job.name!r} appears twice")
            self.runs[job.name] = _Run(job, seq, job.runtime_s)
            self.events.append((job.submit_s, 1, seq, job.name, 0))
        heapq.heapify(self.events)
        self.clock = self.events[0][0] if self.events else 0.0

    def run(self) -> None:
        while self.events:
            now = self.events[0][0]
            self._advance(now)
            while self.events and self.events[0][0] <= now:
                _, kind, _, name, attempt = heapq.heappop(self.events)
                if kind:
                    self._arrive(self.runs[name])
                elif attempt == self.runs[name].attempt:  # else a preempted attempt's stale finish
                    self._finish(self.runs[name], now)
            self._schedule(now)
            if self.on_step:
                self.on_step(now, self.state)

    def _advance(self, now: float) -> None:
        """Add the usage held since the last event to the integrals."""
        elapsed = now - self.clock
        self.clock = now
        if elapsed <= 0:
            return
        for queue, held in self.state.usage.items():
            busy = self.books.busy.setdefault(queue, dict.fromkeys(KINDS, 0.0))
            for kind in KINDS:
                busy[kind] += held[kind] * elapsed

    def _arrive(self, run: _Run) -> None:
        spec = run.job.spec
        shape = (spec.resources, spec.hints.params, spec.schedule.queue)
        feasible = self.feasible.get(shape)
        if feasible is None:
            feasible = self.feasible[shape] = not isinstance(allocator.plan(spec, self.empty), allocator.Infeasible)
        if not feasible:
            self.rejected.append(run.job.name)  # `orch submit` refuses these
            return
        self.state.enqueue(QueuedJob(run.job.name, spec, run.seq))

    def _finish(self, run: _Run, now: float) -> None:
        self.state.stop(run.job.name)
        run.finish = now

    def _schedule(self, now: float) -> None:
        for _ in range(MAX_ROUNDS):
            decision = decide(self.state, self.policy, explain=False)
            for name, plan in decision.admit:
                self._start(self.runs[name], plan, now)
            for name, _ in decision.preempt:
                self._preempt(self.runs[name], now)
            if not decision.preempt:
                return
        raise RuntimeError(f"the policy kept preempting at t={now:g}s for {MAX_ROUNDS} rounds")

    def _start(self, run: _Run, plan: allocator.Plan, now: float) -> None:
        started = self.state.start(run.job.name, plan, started=now)
        self._track_borrowing(started.queue)
        run.started = now
        if run.first_start is None:
            run.first_start = now
        heapq.heappush(self.events, (now + run.remaining, 0, run.seq, run.job.name, run.attempt))

    def _preempt(self, run: _Run, now: float) -> None:
        """Stop a victim, keep the work up to its last checkpoint, and requeue it in its old place."""
        self.state.stop(run.job.name)
        period = run.job.checkpoint_s
        done = now - run.started
        run.remaining -= math.floor(done / period + EPS) * period if period else 0.0
        run.attempt += 1
        self.books.preemptions += 1
        self.state.enqueue(QueuedJob(run.job.name, run.job.spec, run.seq))

    def _track_borrowing(self, name: str) -> None:
        """Raise queue ``name``'s borrowing peaks to what it holds now (only a start raises them)."""
        queue = self.state.snapshot.queues.get(name)
        if queue is None or not queue.quota:
            return
        held = self.state.usage[name]
        peaks = self.books.max_borrowed.setdefault(name, {})
        for key, quota in queue.quota.items():
            peaks[key] = max(peaks.get(key, 0.0), held[key] - quota)

    def report(self) -> dict[str, Any]:
        done = [run for run in self.runs.values() if run.finish is not None]
        start = min((run.job.submit_s for run in done), default=0.0)
        makespan = max((run.finish for run in done), default=start) - start
        capacity = kind_capacity(self.empty)
        kinds = list(capacity)
        busy = {kind: sum(held[kind] for held in self.books.busy.values()) for kind in kinds}

        def share(held: dict[str, float]) -> float:
            if not makespan or not kinds:
                return 0.0
            return sum(held[kind] / (capacity[kind] * makespan) for kind in kinds) / len(kinds)

        waits = [run.first_start - run.job.submit_s for run in done]
        return {
            "policy": self.policy, "jobs": len(done), "rejected": len(self.rejected),
            "makespan_s": round(makespan, 3), "utilization": round(share(busy), 4),
            "utilization_by_resource": {k: round(share({**dict.fromkeys(kinds, 0.0), k: busy[k]}) * len(kinds), 4)
                                        for k in kinds},
            "mean_wait_s": round(_mean(waits), 3),
            "mean_jct_s": round(_mean([run.finish - run.job.submit_s for run in done]), 3),
            "by_class": self._by_class(done),
            "by_queue": {name: {"mean_usage": round(share(held), 4),
                                **({"max_borrowed": self.books.max_borrowed[name]}
                                   if name in self.books.max_borrowed else {})}
                         for name, held in sorted(self.books.busy.items())},
            "preemptions": self.books.preemptions,
        }

    @staticmethod
    def _by_class(done: list[_Run]) -> dict[str, dict[str, float]]:
        waits: dict[str, list[float]] = {}
        for run in done:
            waits.setdefault(run.job.job_class, []).append(run.first_start - run.job.submit_s)
        return {name: {"jobs": len(values), "mean_wait_s": round(_mean(values), 3),
                       "p99_wait_s": round(percentile(values, 0.99), 3)}
                for name, values in sorted(waits.items())}


def kind_capacity(snapshot: ClusterSnapshot) -> dict[str, float]:
    """Each resource kind's total over ``snapshot``'s nodes, for the kinds it has: utilization is
    taken over these."""
    totals = {kind: sum(node.total.get(kind, 0.0) for node in snapshot.nodes) for kind in KINDS}
    return {kind: total for kind, total in totals.items() if total > 0}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` of 0.99 is p99); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def check_invariants(state: QueueState) -> list[str]:
    """Broken rules in ``state``: a queue holding more than quota plus borrow, or a node overcommitted."""
    problems = []
    for name, queue in state.snapshot.queues.items():
        held = state.usage.get(name, {})
        for key in queue.quota or {}:
            limit = queue.limit(key)
            if held.get(key, 0.0) > limit + EPS:
                problems.append(f"queue {name} holds {held[key]:g} {key}, more than quota plus borrow {limit:g}")
    for node in state.snapshot.nodes:
        for key, value in node.free.items():
            if value < -EPS or value > node.total.get(key, 0.0) + EPS:
                problems.append(f"node {node.name}: free {key} {value:g} outside 0..{node.total.get(key, 0.0):g}")
    return problems
