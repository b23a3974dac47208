"""``orch simulate``: replay a trace through the allocator and queue policy in simulated time.

No Ray and no sleeping: a heap of arrival and finish events drives a clock
(core/replay.py, which the ETAs of core/forecast.py run on too);
at each event time the simulation asks ``queue.decide`` (the same code the
control plane runs) and applies its decision to a ``QueueState``: admitted
jobs take their plan's resources, finished jobs give them back, preempted
jobs are requeued in their old place and lose the work since they started,
or since their last ``checkpoint_s`` multiple when the trace line has one.
Preemption is instant here; live, a victim stops after a checkpoint.

A line's ``runtime_by_accelerator`` gives its true running time on each device
type (the plan's type decides); ``time_limit_s`` stops it FAILED after that
much running time over its attempts (``timed_out``). What orch is told
(``--estimates``) goes into the policy's input (``QueuedJob.estimate_s``), and
``eta_error`` compares the start forecast at submit (core/forecast.py, from the
state then, for a sample of at most ``ETA_SAMPLES`` jobs orch was told an
estimate of) with the actual start.

Utilization is busy resource-seconds over capacity times makespan, taken per
resource kind the cluster has (CPU, GPU, TPU: each normalised by its own
capacity, so 8 GPUs weigh as much as 512 CPUs) and averaged over those kinds;
``utilization_by_resource`` has each kind. A queue's ``mean_usage`` is its
share of that same figure (the queues' shares add up to ``utilization``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from orchestrator.core import allocator, hardware
from orchestrator.core.forecast import forecast
from orchestrator.core.policy.state import QueuedJob, QueueState, accelerator_type
from orchestrator.core.estimate import median
from orchestrator.core.replay import ARRIVAL, END, Replay
from orchestrator.core.snapshot import EPS, ClusterSnapshot
from orchestrator.core.spec import JobSpec

KINDS = (hardware.CPU, hardware.GPU, hardware.TPU)
ESTIMATES = ("trace", "exact", "none")  # what orch is told of runtimes: the trace's estimate_s, the truth, nothing
# Jobs whose start is predicted at submit for ``eta_error``, at most: each prediction is a forecast.
ETA_SAMPLES = 200


@dataclass(frozen=True)
class TraceJob:
    """A trace line with its job spec built. ``runtime_by_accelerator``: the true running time on
    each device type (``runtime_s`` on the others); ``estimate_s``: what orch is told, as
    ``hints.runtime``; ``time_limit_s``: the job is stopped FAILED after that much running time."""

    name: str
    job_class: str
    submit_s: float
    runtime_s: float
    spec: JobSpec
    checkpoint_s: float | None = None
    runtime_by_accelerator: Mapping[str, float] | None = None
    estimate_s: float | None = None
    time_limit_s: float | None = None

    def runtime_on(self, accelerator: str) -> float:
        """Its true running time on a plan of ``accelerator`` (``A100:4``, ``TPU-v4-16``, ``CPU``)."""
        by = self.runtime_by_accelerator
        return by.get(accelerator_type(accelerator), self.runtime_s) if by else self.runtime_s


@dataclass
class _Run:
    """A trace job's progress through the simulation; ``remaining`` is in seconds at ``runtime_s``."""

    job: TraceJob
    seq: int
    remaining: float
    attempt: int = 0
    started: float | None = None  # the current attempt's start
    scale: float = 1.0  # the current attempt's running time per second of ``remaining``
    used: float = 0.0  # running time of the ended attempts
    limited: bool = False  # the current attempt ends at the time limit
    first_start: float | None = None
    finish: float | None = None
    timed_out: bool = False
    predicted: float | None = None  # the first start forecast at submit (``eta_error``)
    sampled: bool = False


@dataclass
class _Books:
    """Integrals over simulated time: busy resource-seconds per queue and kind, and borrowing peaks."""

    busy: dict[str, dict[str, float]] = field(default_factory=dict)
    max_borrowed: dict[str, dict[str, float]] = field(default_factory=dict)
    preemptions: int = 0


def simulate(snapshot: ClusterSnapshot, trace: Iterable[TraceJob], policy: str = "orch",
             on_step: Callable[[float, QueueState], None] | None = None, estimates: str = "trace") -> dict[str, Any]:
    """Replay ``trace`` on ``snapshot`` (all free) under ``policy``; SPEC.md's ``orch simulate --json``.

    ``estimates`` is what orch is told of runtimes (``ESTIMATES``): ``trace`` the lines'
    ``estimate_s``, ``exact`` the true runtime on the type a job is planned on, ``none`` nothing
    (the runtime-blind policy). Time limits stop jobs in every mode; orch is told them unless
    ``none``. ``on_step(now, state)`` runs after each instant's decisions are applied (tests
    check invariants there, e.g. with ``check_invariants``). Jobs that can never run on the
    cluster are left out and counted in ``rejected``.
    """
    if estimates not in ESTIMATES:
        raise ValueError(f"unknown estimates {estimates!r}; use one of {', '.join(ESTIMATES)}")
    began = time.perf_counter()
    simulation = _Simulation(snapshot, list(trace), policy, on_step, estimates)
    simulation.run()
    report = simulation.report()
    report["wall_s"] = round(time.perf_counter() - began, 3)
    return report


class _Simulation(Replay):
    def __init__(self, snapshot: ClusterSnapshot, trace: list[TraceJob], policy: str,
                 on_step: Callable[[float, QueueState], None] | None, estimates: str):
        super().__init__(QueueState(snapshot), policy)
        self.empty, self.on_step, self.estimates = snapshot, on_step, estimates
        self.books = _Books()
        self.runs: dict[str, _Run] = {}
        self.rejected: list[str] = []
        self.feasible: dict[tuple, bool] = {}  # job shape -> whether it fits the empty cluster
        self.arrived: list[_Run] = []  # sampled for ``eta_error`` at this instant
        for seq, job in enumerate(sorted(trace, key=lambda j: j.submit_s)):
            if job.name in self.runs:
                raise ValueError(f"trace job {job.name!r} appears twice")
            self.runs[job.name] = _Run(job, seq, job.runtime_s)
            self.push(job.submit_s, ARRIVAL, seq, job.name)
        told = [run for run in self.runs.values() if self._told(run).timed]
        for run in told[::math.ceil(len(told) / ETA_SAMPLES) if told else 1]:
            run.sampled = True
        self.clock = self.events[0][0] if self.events else 0.0

    def attempt(self, name: str) -> int:
        return self.runs[name].attempt

    def advance(self, now: float) -> None:
        """Add the usage held since the last event to the integrals."""
        elapsed = now - self.clock
        self.clock = now
        if elapsed <= 0:
            return
        for queue, held in self.state.usage.items():
            busy = self.books.busy.setdefault(queue, dict.fromkeys(KINDS, 0.0))
            for kind in KINDS:
                busy[kind] += held[kind] * elapsed

    def _told(self, run: _Run) -> QueuedJob:
        """The queued job as orch sees it: what it is told of the runtime left and the limit."""
        job = run.job
        if self.estimates == "none":
            return QueuedJob(job.name, job.spec, run.seq)
        left = None if job.time_limit_s is None else max(job.time_limit_s - run.used, 0.0)
        fraction = run.remaining / job.runtime_s  # of the work, left
        if self.estimates == "exact":
            by = job.runtime_by_accelerator
            by = {name: value * fraction for name, value in by.items()} if by else None
            return QueuedJob(job.name, job.spec, run.seq, run.remaining, left, by)
        told = None if job.estimate_s is None else job.estimate_s * fraction
        return QueuedJob(job.name, job.spec, run.seq, told, left)

    def arrive(self, name: str, now: float) -> None:
        run = self.runs[name]
        spec = run.job.spec
        shape = (spec.resources, spec.hints.params, spec.schedule.queue)
        feasible = self.feasible.get(shape)
        if feasible is None:
            feasible = self.feasible[shape] = not isinstance(allocator.plan(spec, self.empty), allocator.Infeasible)
        if not feasible:
            self.rejected.append(run.job.name)  # `orch submit` refuses these
            return
        self.state.enqueue(self._told(run))
        if run.sampled:
            self.arrived.append(run)

    def end(self, name: str, now: float) -> None:
        run = self.runs[name]
        self.state.stop(name)
        run.finish, run.timed_out = now, run.limited

    def start(self, name: str, plan: allocator.Plan, now: float) -> None:
        run = self.runs[name]
        started = self.state.start(name, plan, started=now)
        self._track_borrowing(started.queue)
        run.started = now
        if run.first_start is None:
            run.first_start = now
        job = run.job
        run.scale = job.runtime_on(plan.accelerator) / job.runtime_s if job.runtime_by_accelerator else 1.0
        running = run.remaining * run.scale if run.scale != 1.0 else run.remaining
        left = math.inf if job.time_limit_s is None else job.time_limit_s - run.used
        run.limited = left < running
        self.push(now + min(running, left), END, run.seq, name, run.attempt)

    def preempt(self, name: str, now: float) -> None:
        """Stop a victim, keep the work up to its last checkpoint, and requeue it in its old place."""
        run = self.runs[name]
        self.state.stop(name)
        period = run.job.checkpoint_s
        done = now - run.started
        kept = math.floor(done / period + EPS) * period if period else 0.0
        run.remaining -= kept / run.scale if run.scale != 1.0 else kept
        run.used += done
        run.attempt += 1
        self.books.preemptions += 1
        self.state.enqueue(self._told(run))

    def after(self, now: float) -> None:
        if self.on_step:
            self.on_step(now, self.state)
        if self.arrived:
            waiting = [run for run in self.arrived if run.first_start is None]
            for run in self.arrived:
                run.predicted = now  # started at once: the prediction was now
            if waiting:
                ahead = forecast(self.state, self.policy, until=[run.job.name for run in waiting])
                for run in waiting:
                    run.predicted = ahead[run.job.name].start_s
            self.arrived = []

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
            "timed_out": sum(run.timed_out for run in done),
            "eta_error": self._eta_error(),
        }

    def _eta_error(self) -> dict[str, Any]:
        """The first start forecast at submit against the actual one, for the sampled jobs orch was
        told an estimate of; ``unknown``: those whose forecast had no start (behind a job without
        one); ``started_at_submit``: those that started at once (their prediction is exact)."""
        sampled = [run for run in self.runs.values() if run.sampled and run.first_start is not None]
        errors = [abs(run.first_start - run.predicted) for run in sampled if run.predicted is not None]
        return {"jobs": len(sampled), "unknown": len(sampled) - len(errors),
                "started_at_submit": sum(run.first_start == run.job.submit_s for run in sampled),
                "median_abs_s": round(median(errors), 3) if errors else None,
                "p90_abs_s": round(percentile(errors, 0.9), 3) if errors else None}

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
