"""The policy's input and output as data: queued and running jobs, the pending jobs by queue
and shape, the books of one state, and a ``Decision``."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

from orchestrator.core import hardware
from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.policy.quota import totals
from orchestrator.core.snapshot import QUOTA_RESOURCES, ClusterSnapshot
from orchestrator.core.spec import JobSpec, Resources

if TYPE_CHECKING:
    from orchestrator.core.policy.finish import FinishChoice


def ends_within(estimate_s: float | None, limit_s: float | None) -> float | None:
    """The running time a job is expected to end within: its estimate, bounded by its time limit
    (a limit alone is an upper bound: the job is stopped there); None when neither is known."""
    known = [value for value in (estimate_s, limit_s) if value is not None]
    return min(known) if known else None


@dataclass(frozen=True)
class QueuedJob:
    """A job waiting to start; ``seq`` orders submissions (a store sequence number or a time).

    ``estimate_s``: its expected running time (None: unknown); ``limit_s``: the running time its
    time limit leaves it. ``estimate_by_accelerator`` (type name -> seconds, e.g. ``{"V100":
    3600}``) overrides ``estimate_s`` on a plan of that type. Without them the policy is blind
    to runtimes (SPEC.md's conservative rule).
    """

    id: str
    spec: JobSpec
    seq: float
    estimate_s: float | None = None
    limit_s: float | None = None
    estimate_by_accelerator: Mapping[str, float] | None = None

    @property
    def timed(self) -> bool:
        """Whether anything bounds its running time (an estimate or a limit): only such a job backfills."""
        return self.estimate_s is not None or self.limit_s is not None or bool(self.estimate_by_accelerator)

    def estimate_on(self, plan: Plan | None = None) -> float | None:
        """Its expected running time on ``plan`` (None: the plan-independent figure)."""
        if plan is not None and self.estimate_by_accelerator:
            return self.estimate_by_accelerator.get(accelerator_type(plan.accelerator), self.estimate_s)
        return self.estimate_s

    def ends_within(self, plan: Plan | None = None) -> float | None:
        """``estimate_on(plan)`` bounded by its time limit: it is expected to end within this."""
        return ends_within(self.estimate_on(plan), self.limit_s)

    @property
    def priority(self) -> int:
        return self.spec.schedule.priority

    @property
    def queue(self) -> str:
        return self.spec.schedule.queue


@dataclass(frozen=True)
class RunningJob:
    """A job holding resources: ``demand`` is node -> resources (``Plan.demand()``).

    ``stopping`` marks a job already asked to stop for a preemption: its
    resources are about to be free, and it is not preempted twice.
    ``estimate_s``: the expected running time of its current attempt, so it is expected to end at
    ``started + estimate_s``; ``limit_s``: the running time its time limit leaves this attempt.
    """

    id: str
    queue: str
    priority: int
    preemptible: bool
    demand: Mapping[str, Mapping[str, float]]
    started: float = 0.0
    stopping: bool = False
    estimate_s: float | None = None
    limit_s: float | None = None

    def expected_end(self, now: float) -> float | None:
        """When it is expected to end: ``now`` once asked to stop or past its estimate (an overrun
        ends any moment, as far as anyone knows); None when nothing says."""
        if self.stopping:
            return now
        within = ends_within(self.estimate_s, self.limit_s)
        return None if within is None else max(self.started + within, now)

    @cached_property
    def held(self) -> dict[str, float]:
        """Totals over nodes of the resources quotas count (CPU, GPU, TPU, memory)."""
        return totals(self.demand.values())

    @classmethod
    def from_plan(cls, job_id: str, spec: JobSpec, plan: Plan, started: float = 0.0,
                  estimate_s: float | None = None, limit_s: float | None = None,
                  stopping: bool = False) -> RunningJob:
        """The running job that ``plan`` placed."""
        schedule = spec.schedule
        return cls(job_id, schedule.queue, schedule.priority, schedule.preemptible, plan.demand(), started, stopping,
                   estimate_s, limit_s)


def accelerator_type(accelerator: str) -> str:
    """The device type a plan's accelerator names, as ``runtime_by_accelerator`` keys it:
    ``A100:4`` -> ``A100``, ``TPU-v4-16`` -> ``TPU-v4``; ``CPU`` and ``GPU:N`` as written."""
    request = hardware.parse_accelerator(accelerator)
    device = request.slice.accelerator if request.slice else request.type
    return device.name if device else str(request).split(":", 1)[0]


def placeable(result: Plan | Infeasible) -> Plan | None:
    return result if isinstance(result, Plan) and result.status == "placeable" else None


class Pending:
    """Queued jobs grouped by (priority, queue, shape), each group in submit order.

    Groups let a step skip every job behind one that failed: a later job of
    the same group waits for the same reason. The owner keeps it up to date
    (``add``/``remove``), so a step never sorts the whole queue.
    """

    def __init__(self, jobs: Iterable[QueuedJob] = ()):
        self._jobs: dict[str, QueuedJob] = {}
        self._queues: dict[str, dict[tuple, list[QueuedJob]]] = {}  # queue -> group key -> jobs
        self._group_of: dict[str, tuple] = {}
        self._shapes: dict[tuple, int] = {}
        self._count: dict[int, Counter] = {}  # shape id -> queue -> queued jobs
        self._resources: dict[int, Resources] = {}  # shape id -> its resources
        self._heads: dict[str, QueuedJob] = {}  # queue -> its first job in order
        self._stale: set[str] = set()  # queues whose head was removed
        self._arrival: list[QueuedJob] = []
        self.timed = 0  # how many queued jobs are ``timed``: none, and the policy is runtime-blind
        for job in jobs:
            self.add(job)

    def add(self, job: QueuedJob) -> None:
        if job.id in self._jobs:
            raise ValueError(f"job {job.id!r} is queued already")
        shape = self._shapes.setdefault((job.spec.resources, job.spec.hints.params), len(self._shapes))
        key = (job.priority, job.queue, shape)
        self._jobs[job.id], self._group_of[job.id] = job, key
        self._count.setdefault(shape, Counter())[job.queue] += 1
        self._resources.setdefault(shape, job.spec.resources)
        bisect.insort(self._queues.setdefault(job.queue, {}).setdefault(key, []), job, key=_seq)
        bisect.insort(self._arrival, job, key=_seq)
        self.timed += job.timed
        head = self._heads.get(job.queue)
        if job.queue not in self._stale and (head is None or _order(job) < _order(head)):
            self._heads[job.queue] = job

    def remove(self, job_id: str) -> QueuedJob:
        job = self._jobs.pop(job_id)
        key = self._group_of.pop(job_id)
        groups = self._queues[job.queue]
        group = groups[key]
        group.pop(_index(group, job))
        if not group:
            del groups[key]
            if not groups:
                del self._queues[job.queue]
        counts = self._count[key[2]]
        counts[key[1]] -= 1
        if not counts[key[1]]:
            del counts[key[1]]
            if not counts:
                del self._count[key[2]]
        self._arrival.pop(_index(self._arrival, job))
        self.timed -= job.timed
        if self._heads.get(job.queue) is job:
            self._stale.add(job.queue)
        return job

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def get(self, job_id: str) -> QueuedJob:
        return self._jobs[job_id]

    def groups(self) -> list[tuple[int, list[QueuedJob]]]:
        """(shape id, jobs in submit order) per group; equal shape ids plan alike."""
        return [(key[2], jobs) for groups in self._queues.values() for key, jobs in groups.items()]

    def in_arrival_order(self) -> Iterator[QueuedJob]:
        return iter(self._arrival)

    def heads(self) -> Mapping[str, QueuedJob]:
        """Each queue's first job in order: highest priority, then earliest (read only)."""
        for queue in self._stale:
            groups = self._queues.get(queue)
            if groups:
                self._heads[queue] = min((jobs[0] for jobs in groups.values()), key=_order)
            else:
                self._heads.pop(queue, None)
        self._stale.clear()
        return self._heads

    def shapes(self) -> list[tuple[Resources, Iterable[str]]]:
        """The distinct ``resources`` of the queued jobs, each with the queues that hold such jobs."""
        return [(self._resources[shape], counts.keys()) for shape, counts in self._count.items()]


def _order(job: QueuedJob) -> tuple[int, float]:
    return -job.priority, job.seq


def _seq(job: QueuedJob) -> float:
    return job.seq


def _index(jobs: list[QueuedJob], job: QueuedJob) -> int:
    i = bisect.bisect_left(jobs, job.seq, key=_seq)
    while jobs[i].id != job.id:  # equal seqs: scan the few ties
        i += 1
    return i


@dataclass
class QueueState:
    """Everything ``decide`` reads. ``snapshot`` has the running jobs' demand taken already;
    ``now`` is the time the estimates count from (time is data: the policy reads no clock).

    ``start``/``stop``/``enqueue`` keep the books (free resources, queue usage)
    in one place for whoever applies decisions: the simulator, or a control
    plane that builds a fresh state each step with ``build``.
    """

    snapshot: ClusterSnapshot
    pending: Pending = field(default_factory=Pending)
    running: dict[str, RunningJob] = field(default_factory=dict)
    usage: dict[str, dict[str, float]] = field(default_factory=dict)
    preemptible_priorities: Counter = field(default_factory=Counter)
    now: float = 0.0

    @classmethod
    def build(cls, snapshot: ClusterSnapshot, queued: Iterable[QueuedJob],
              running: Iterable[RunningJob], now: float = 0.0) -> QueueState:
        """A state from plain lists; ``snapshot``'s free resources must exclude what ``running`` holds."""
        state = cls(snapshot, Pending(queued), now=now)
        for job in running:
            state._hold(job, 1.0)
        return state

    def enqueue(self, job: QueuedJob) -> None:
        self.pending.add(job)

    def start(self, job_id: str, plan: Plan, started: float = 0.0) -> RunningJob:
        """Move a queued job to running on ``plan``'s nodes, expected to run its estimate on that plan."""
        job = self.pending.remove(job_id)
        running = RunningJob.from_plan(job_id, job.spec, plan, started, job.estimate_on(plan), job.limit_s)
        self.snapshot = self.snapshot.allocate(running.demand)
        self._hold(running, 1.0)
        return running

    def stop(self, job_id: str) -> RunningJob:
        """A running job ended or was preempted: give its resources back."""
        job = self.running[job_id]
        self.snapshot = self.snapshot.release(job.demand)
        self._hold(job, -1.0)
        return job

    def _hold(self, job: RunningJob, sign: float) -> None:
        usage = self.usage.setdefault(job.queue, dict.fromkeys(QUOTA_RESOURCES, 0.0))
        for key, amount in job.held.items():
            usage[key] += sign * amount
        if sign > 0:
            self.running[job.id] = job
        else:
            del self.running[job.id]
        if job.preemptible and not job.stopping:
            self.preemptible_priorities[job.priority] += int(sign)
            if not self.preemptible_priorities[job.priority]:
                del self.preemptible_priorities[job.priority]


@dataclass
class Decision:
    """What to do now. ``preempt`` holds (victim, reason); ``preempted_for`` victim -> the job it stops for;
    ``backfilled``: admitted jobs that use reserved resources -> when they are expected to end by
    (the reservations' shadow time); ``finish``: jobs whose hardware was chosen by expected finish
    (admitted or waiting for it) -> the options as weighed (core/policy/finish.py)."""

    admit: list[tuple[str, Plan]] = field(default_factory=list)
    preempt: list[tuple[str, str]] = field(default_factory=list)
    preempted_for: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    backfilled: dict[str, float] = field(default_factory=dict)  # admitted onto reserved resources -> must end by
    finish: dict[str, FinishChoice] = field(default_factory=dict)
