"""The books of one policy step: working copies of the free resources and of each queue's usage,
the reservations, and the view they leave. The step's parts read them; the step writes them."""

from __future__ import annotations

import math
from typing import Mapping

from orchestrator.core.allocator import Plan
from orchestrator.core.policy.quota import cohorts, quota_room
from orchestrator.core.policy.state import QueuedJob, QueueState
from orchestrator.core.snapshot import EPS, QUOTA_RESOURCES, ClusterSnapshot, QueueConfig


class Books:
    """``view`` is ``free`` less the reservations: what a job may take now without delaying a
    job ahead of it. ``shadow``: node -> the earliest time a reservation on it is expected to
    start (None: unknown); a job that ends before may use the reserved resources meanwhile."""

    def __init__(self, state: QueueState):
        self.queues = state.snapshot.queues
        self.now = state.now
        self.timed = state.pending.timed > 0  # estimates are in play: the policy may backfill by them
        self.free = self.view = state.snapshot
        self.reserved: dict[str, dict[str, float]] = {}
        self.holder: dict[str, QueuedJob] = {}  # node -> the first job with a reservation on it
        self.shadow: dict[str, float | None] = {}
        self.running = state.running.values()
        self.admitted: list[tuple[Mapping[str, Mapping[str, float]], float | None]] = []  # this step's starts
        self._ends: dict[str, list[tuple[Mapping[str, float], float | None]]] | None = None
        self.usage = {name: dict(held) for name, held in state.usage.items()}
        self.cohorts = cohorts(state.snapshot)
        self.rooms: dict[tuple[str, str], float] = {}  # (queue, resource) -> quota_room, for the usage now
        self.holding: dict[str, str] = {}  # queue -> its job that preempts (and holds quota) this step

    # ---- quota -------------------------------------------------------------------------------

    def room(self, queue: QueueConfig, resource: str) -> float:
        """``quota_room`` of ``queue``, remembered until usage changes (an admission)."""
        room = self.rooms.get((queue.name, resource))
        if room is None:
            room = self.rooms[(queue.name, resource)] = quota_room(queue, resource, self.usage, self.cohort(queue))
        return room

    def held(self, queue: str) -> Mapping[str, float]:
        return self.usage.get(queue, {})

    def cohort(self, queue: QueueConfig) -> list[QueueConfig]:
        return self.cohorts.get(queue.cohort, []) if queue.cohort else []

    def over_own_quota(self, queue: QueueConfig) -> bool:
        held = self.held(queue.name)
        return any(held.get(key, 0.0) > amount + EPS for key, amount in (queue.quota or {}).items())

    def count(self, queue: str, need: Mapping[str, float]) -> None:
        """Count ``need`` as held by ``queue`` for the rest of the step."""
        usage = self.usage.setdefault(queue, dict.fromkeys(QUOTA_RESOURCES, 0.0))
        for key, amount in need.items():
            usage[key] += amount
        self.rooms.clear()

    def hold_quota(self, job: QueuedJob, need: Mapping[str, float]) -> None:
        """Count ``need`` as held by ``job``'s queue, and keep the queue from borrowing: else its
        later jobs would take the quota that ``job`` preempts to use, and once the victims stop
        it would have to borrow, which never preempts, and could not start."""
        self.count(job.queue, need)
        self.holding.setdefault(job.queue, job.id)

    # ---- resources ---------------------------------------------------------------------------

    def take(self, job: QueuedJob, plan: Plan, need: Mapping[str, float], reserved: bool = False) -> None:
        """``job`` starts on ``plan``: its resources and quota are no longer free. ``reserved``: the
        plan uses reserved resources (a backfill), and the view stays free less what is reserved."""
        demand = plan.demand()
        self.free = self.free.allocate(demand)
        self.view = self.view_of(self.free) if reserved else self.view.allocate(demand)
        self.count(job.queue, need)
        within = job.ends_within(plan)
        end = None if within is None else self.now + within
        self.admitted.append((demand, end))
        if self._ends is not None:
            for node, amounts in demand.items():
                self._ends.setdefault(node, []).append((amounts, end))

    def reserve(self, job: QueuedJob, demand: Mapping[str, Mapping[str, float]], shadow: float | None = None) -> None:
        """Hold ``demand`` for ``job``, expected to start at ``shadow`` (None: unknown)."""
        for name, resources in demand.items():
            held = self.reserved.setdefault(name, {})
            for key, amount in resources.items():
                held[key] = held.get(key, 0.0) + amount
            self.holder.setdefault(name, job)
            earlier = self.shadow.get(name, shadow)
            self.shadow[name] = None if earlier is None or shadow is None else min(earlier, shadow)
        self.view = self.view_of(self.free)

    def ends_on(self, name: str) -> list[tuple[Mapping[str, float], float | None]]:
        """What each job holding resources on node ``name`` holds there, and when it is expected to end."""
        if self._ends is None:
            ends: dict[str, list[tuple[Mapping[str, float], float | None]]] = {}
            held = [(job.demand, job.expected_end(self.now)) for job in self.running]
            for demand, end in [*held, *self.admitted]:
                for node, amounts in demand.items():
                    ends.setdefault(node, []).append((amounts, end))
            self._ends = ends
        return self._ends.get(name, [])

    def backfill_until(self, placed: Plan) -> float | None:
        """The time a job placed as ``placed`` must end by to delay no reservation it would use:
        the earliest shadow among its reserved nodes (infinite on none); None when one is unknown."""
        latest = math.inf
        for name in placed.nodes:
            if name in self.reserved:
                shadow = self.shadow[name]
                if shadow is None:
                    return None
                latest = min(latest, shadow)
        return latest

    def view_of(self, free: ClusterSnapshot) -> ClusterSnapshot:
        """``free`` less the reservations."""
        if not self.reserved:
            return free
        return free.with_free({name: {key: max(value - held.get(key, 0.0), 0.0)
                                      for key, value in free.node(name).free.items()}
                               for name, held in self.reserved.items()})

    def classes(self, placed: Plan) -> set[int]:
        """The node classes ``placed`` runs on."""
        index = self.view.index
        return {index.class_of[index.position[name]] for name in placed.nodes}
