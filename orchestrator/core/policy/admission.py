"""Per-queue admission within one step: quota, borrowing from the cohort, and reclaim.

A job over its queue's quota holds back the later jobs of its queue that need
the same resource; a job that would take its queue beyond its own quota
borrows, and goes to the step's second pass (jobs within their quota first).
"""

from __future__ import annotations

from typing import Mapping

from orchestrator.core import hardware
from orchestrator.core.policy.books import Books
from orchestrator.core.policy.quota import least_held
from orchestrator.core.policy.reasons import BehindQuota, OverQuota
from orchestrator.core.policy.state import Pending, QueuedJob
from orchestrator.core.snapshot import EPS
from orchestrator.core.spec import Resources


class QuotaGate:
    """The quota questions of one step, over its ``books``."""

    def __init__(self, books: Books):
        self.books, self.queues = books, books.queues
        self.behind: dict[tuple[str, str], str] = {}  # (queue, resource) -> job waiting for that quota
        self.deferring: set[tuple[str, str]] = set()  # (queue, resource) with a job deferred to borrow

    def bound(self, pending: Pending) -> tuple[set[str], set[str]]:
        """Queues whose first job in order needs more CPUs than the queue may hold more now, and
        queues whose first job would borrow CPUs (take the queue beyond its own quota)."""
        bound, borrowing = set(), set()
        for name, job in pending.heads().items():
            queue = self.queues.get(name)
            if queue is not None and queue.quota and hardware.CPU in queue.quota:
                cpus = least_held(job.spec.resources)[hardware.CPU]
                if cpus > self.books.room(queue, hardware.CPU) + EPS:
                    bound.add(name)
                elif self.books.held(name).get(hardware.CPU, 0.0) + cpus > queue.quota[hardware.CPU] + EPS:
                    borrowing.add(name)
        return bound, borrowing

    def over_quota(self, job: QueuedJob, need: Mapping[str, float]) -> OverQuota | BehindQuota | None:
        """Why ``need`` does not fit ``job``'s queue's quota now, or None."""
        queue = self.queues.get(job.queue)
        if queue is None or not queue.quota:
            return None
        for resource, amount in need.items():
            if amount <= EPS or resource not in queue.quota:
                continue
            first = self.behind.get((queue.name, resource))
            if first:
                return BehindQuota(first, queue.name, resource)
            room = self.books.room(queue, resource)
            if amount > room + EPS:
                self.behind[(queue.name, resource)] = job.id
                held = self.books.held(queue.name).get(resource, 0.0)
                return OverQuota(queue.name, resource, amount, room, held, queue.quota[resource],
                                 (queue.borrow or {}).get(resource), queue.cohort)
        return None

    def borrows(self, job: QueuedJob, need: Mapping[str, float]) -> bool:
        """``job`` would take its queue beyond its own quota, or a job of its queue ahead of it does."""
        queue = self.queues.get(job.queue)
        held = self.books.held(job.queue)
        over = False
        for key, quota in ((queue.quota or {}) if queue else {}).items():
            if need.get(key, 0.0) > EPS and ((queue.name, key) in self.deferring
                                              or held.get(key, 0.0) + need[key] > quota + EPS):
                self.deferring.add((queue.name, key))
                over = True
        return over

    def reclaim_from(self, job: QueuedJob, need: Mapping[str, float]) -> set[str]:
        """Cohort queues over their quota that ``job`` may reclaim from: its queue stays within its own."""
        queue = self.queues.get(job.queue)
        if queue is None or not queue.quota or not queue.cohort:
            return set()
        held, usage = self.books.held(queue.name), self.books.usage
        wanted = [key for key in queue.quota if need.get(key, 0.0) > EPS]
        if not wanted or any(held.get(k, 0.0) + need[k] > queue.quota[k] + EPS for k in wanted):
            return set()
        return {other.name for other in self.books.cohort(queue)
                if other.name != queue.name and any(
                    usage.get(other.name, {}).get(k, 0.0) > other.quota[k] + EPS
                    for k in wanted if other.quota and k in other.quota)}

    def may_reclaim_from(self, job: QueuedJob) -> frozenset[str]:
        """A superset of what ``reclaim_from`` gives ``job``, without its plan: the other queues of its
        cohort over their quota, when its queue stays within its own quota."""
        queue = self.queues.get(job.queue)
        if queue is None or not queue.quota or not queue.cohort:
            return frozenset()
        held = self.books.held(queue.name)
        for key, amount in least_held(job.spec.resources).items():
            if amount > EPS and key in queue.quota and held.get(key, 0.0) + amount > queue.quota[key] + EPS:
                return frozenset()
        return frozenset(other.name for other in self.books.cohort(queue)
                         if other.name != queue.name and self.books.over_own_quota(other))

    def may_hold(self, name: str, resources: Resources) -> bool:
        """Queue ``name`` may hold a job of ``resources`` on top of what it holds now (some accelerator
        option within its quota plus borrow limit): else it waits for its own jobs to end, not for nodes."""
        queue = self.queues.get(name)
        if queue is None or not queue.quota:
            return True
        workers = resources.workers.min
        for option in resources.accelerator.options:
            need = least_held(resources)
            if option.kind == "slice":
                need[hardware.TPU] = float(option.slice.chips)
            elif option.kind in ("gpu", "tpu"):
                need[option.type.resource if option.type else hardware.GPU] = float(option.count * workers)
            held = self.books.held(name)
            if all(amount <= queue.limit(key) - held.get(key, 0.0) + EPS
                   for key, amount in need.items() if amount > EPS and key in queue.quota):
                return True
        return False
