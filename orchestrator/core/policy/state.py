"""The policy's input and output as data: queued and running jobs, the pending jobs by queue
and shape, the books of one state, and a ``Decision``."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Iterator, Mapping

from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.policy.quota import totals
from orchestrator.core.snapshot import QUOTA_RESOURCES, ClusterSnapshot
from orchestrator.core.spec import JobSpec, Resources


@dataclass(frozen=True)
class QueuedJob:
    """A job waiting to start; ``seq`` orders submissions (a store sequence number or a time)."""

    id: str
    spec: JobSpec
    seq: float

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
    """

    id: str
    queue: str
    priority: int
    preemptible: bool
    demand: Mapping[str, Mapping[str, float]]
    started: float = 0.0
    stopping: bool = False

    @cached_property
    def held(self) -> dict[str, float]:
        """Totals over nodes of the resources quotas count (CPU, GPU, TPU, memory)."""
        return totals(self.demand.values())

    @classmethod
    def from_plan(cls, job_id: str, spec: JobSpec, plan: Plan, started: float = 0.0,
                  stopping: bool = False) -> RunningJob:
        """The running job that ``plan`` placed."""
        schedule = spec.schedule
        return cls(job_id, schedule.queue, schedule.priority, schedule.preemptible, plan.demand(), started, stopping)


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
    """Everything ``decide`` reads. ``snapshot`` has the running jobs' demand taken already.

    ``start``/``stop``/``enqueue`` keep the books (free resources, queue usage)
    in one place for whoever applies decisions: the simulator, or a control
    plane that builds a fresh state each step with ``build``.
    """

    snapshot: ClusterSnapshot
    pending: Pending = field(default_factory=Pending)
    running: dict[str, RunningJob] = field(default_factory=dict)
    usage: dict[str, dict[str, float]] = field(default_factory=dict)
    preemptible_priorities: Counter = field(default_factory=Counter)

    @classmethod
    def build(cls, snapshot: ClusterSnapshot, queued: Iterable[QueuedJob],
              running: Iterable[RunningJob]) -> QueueState:
        """A state from plain lists; ``snapshot``'s free resources must exclude what ``running`` holds."""
        state = cls(snapshot, Pending(queued))
        for job in running:
            state._hold(job, 1.0)
        return state

    def enqueue(self, job: QueuedJob) -> None:
        self.pending.add(job)

    def start(self, job_id: str, plan: Plan, started: float = 0.0) -> RunningJob:
        """Move a queued job to running on ``plan``'s nodes."""
        job = self.pending.remove(job_id)
        running = RunningJob.from_plan(job_id, job.spec, plan, started)
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
    """What to do now. ``preempt`` holds (victim, reason); ``preempted_for`` victim -> the job it stops for."""

    admit: list[tuple[str, Plan]] = field(default_factory=list)
    preempt: list[tuple[str, str]] = field(default_factory=list)
    preempted_for: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
