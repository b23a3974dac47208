"""The queue policy: which queued jobs start and which running jobs stop. PURE: no Ray, no I/O, no clock.

``decide(state)`` looks at the queued and running jobs and the free resources
and returns a ``Decision`` as data; the control plane (and ``orch simulate``)
act on it. Every fit question goes to ``allocator.plan``, so the live system
and the simulator run the same policy code.

Policy ``orch`` (SPEC.md sections 2-4):
- Order: priority (higher first), then submit order (``seq``) within a priority.
- Quotas: a queue's running jobs hold at most its ``quota``, plus up to
  ``borrow`` more of what the other queues of its cohort leave unused. A job
  that would exceed that waits, and so do the later jobs of its queue that
  need the same resource (so a big job is not starved by its queue's small ones);
  the quota is checked before anything else, so this holds whatever else the
  job waits for. Jobs within their queue's own quota are considered first,
  jobs that must borrow after them (as in Kueue), so borrowing never takes
  what an owner waits for.
- Reservations and backfill: a job that does not fit the free resources gets a
  reservation: the share of the least busy nodes it would run on (chosen by
  planning it as if the least busy nodes of its node class were empty).
  Later jobs backfill only onto what no reservation holds, so they can never
  take what the waiting job needs and a stream of small jobs cannot starve a
  big one. Runtimes are unknown in a live cluster, so this is the
  conservative rule: it never guesses whether a backfilled job ends in time.
  Reservations are recomputed each step; a reserved node only drains (nothing
  lower in the order lands on it), so each waiting job does start.
  Only the first ``RESERVATIONS`` waiting jobs of a step hold one, the usual
  bound on conservative backfill: deeper reservations would idle the cluster.
- Accelerator nodes: the CPUs and memory that come with a node's free
  devices (its totals shared out per device: 8 CPUs per GPU on a 32-CPU,
  4-GPU node) are kept off CPU-only work while any queued job may use those
  devices, wherever it stands in the order: a CPU job there would leave the
  devices idle until it ends. Only a job whose queue is at its quota plus
  borrow limit does not count (it waits for its own jobs, not for nodes).
  CPUs beyond that share, and all of them when no queued job wants the
  devices, are free for CPU work.
- Preemption: a job that cannot start may preempt preemptible running jobs of
  lower priority, and a job whose queue stays within its own quota may
  reclaim from preemptible jobs of cohort queues that are over their quota
  (whatever their priority). Victims: lowest priority first, then the largest
  (fewest victims), then the most recently started (least work lost); only
  when stopping them makes the job fit, and redundant ones are dropped.
  Non-preemptible jobs are never preempted. A job preempts only on node
  classes no job ahead of it waits for (else that job could take what the
  victims free and this one would preempt again), and never to borrow.
  CPU-only jobs preempt only CPU-only jobs (a device job's CPUs come with
  its devices, and requeued it would want them back). The job preempting
  holds its queue's quota for the rest of the step, and its queue does not
  borrow meanwhile: else a later job of the queue would take that quota,
  and once the victims stop the preempting job would have to borrow (which
  never preempts), leave the victims' resources to them, and preempt again.
  Preempted jobs stop after a
  checkpoint, so their resources are free only in a later step; meanwhile
  the job they stop for holds a reservation on what they free.

- Sweeps: an admitted sweep also gets the further trial slots that fit what
  is left then (``max_concurrent``: ``auto`` or a cap), within its queue's own
  quota, and holds them all until it ends (``Plan.trials``): its trials run
  at once on resources the books count.

Policy ``fifo`` is SPEC.md's baseline: one queue in submit order, no
priorities, quotas, backfill or preemption; the first job that does not fit
blocks all behind it.
"""

from __future__ import annotations

import heapq
from typing import Callable, Mapping

from orchestrator.core import allocator, hardware
from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.policy.quota import busy, cohorts, device_classes, device_share, least_held, plan_totals, quota_room
from orchestrator.core.policy.reasons import amount_text, device_kind, named, waits_for
from orchestrator.core.policy.slots import with_trials
from orchestrator.core.policy.state import Decision, QueuedJob, QueueState, RunningJob, placeable
from orchestrator.core.snapshot import EPS, QUOTA_RESOURCES, ClusterSnapshot, QueueConfig
from orchestrator.core.spec import JobSpec, Resources

_DEFER = "defer"  # compared by identity: a job that must borrow goes to the second pass
# How many waiting jobs of one step hold a reservation (see the module docstring).
RESERVATIONS = 4
POLICIES = ("orch", "fifo")


def decide(state: QueueState, policy: str = "orch", explain: bool = True) -> Decision:
    """The policy's decision for ``state``. ``explain=False`` skips the waiting reasons
    (and stops once nothing more can start), for simulations of many jobs."""
    if policy == "fifo":
        return _fifo(state, explain)
    if policy != "orch":
        raise ValueError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    return _Step(state, explain).run()


def _fifo(state: QueueState, explain: bool) -> Decision:
    decision, free = Decision(), state.snapshot
    jobs = state.pending.in_arrival_order()
    for job in jobs:
        result = allocator.plan(job.spec, free)
        if isinstance(result, Plan) and result.status == "placeable":
            free = free.allocate(result.demand())
            decision.admit.append((job.id, result))
            continue
        if explain:
            decision.waiting[job.id] = waits_for(result, free, state.running.values())
            behind = f"behind {job.id} (fifo: the first job in the queue blocks all behind it)"
            decision.waiting.update((later.id, behind) for later in jobs)
        break
    return decision


# ---- policy orch: one step ---------------------------------------------------------------


class _Step:
    """One ``decide`` call of policy orch, over working copies of the free resources and usage.

    ``view`` is ``free`` less the reservations: what a job may take now
    without delaying a job ahead of it.
    """

    def __init__(self, state: QueueState, explain: bool):
        self.state, self.explain = state, explain
        self.queues = state.snapshot.queues
        self.free = self.view = state.snapshot
        self.reserved: dict[str, dict[str, float]] = {}
        self.holder: dict[str, QueuedJob] = {}  # node -> the first job with a reservation on it
        self.reservations = 0
        self.usage = {name: dict(held) for name, held in state.usage.items()}
        self.cohorts = cohorts(state.snapshot)
        self.rooms: dict[tuple[str, str], float] = {}  # (queue, resource) -> quota_room, for the usage now
        self.holding: dict[str, str] = {}  # queue -> its job that preempts (and holds quota) this step
        self.keys_of: dict[tuple[int, str], tuple] = {}
        self.keys: set[tuple] | None = None  # all placement keys of the pass, when needed
        self.failed: dict[tuple, str] = {}  # placement keys that did not fit the view -> why
        self.tried: set[tuple] = set()  # (placement key, queue, priority) that looked for victims
        self.no_victims: dict[tuple, list[frozenset[str]]] = {}  # (key, priority) -> reclaim sets that found none
        self.cannot_preempt: set[tuple] = set()  # placement keys whose nodes a job ahead waits for
        self.behind: dict[tuple[str, str], str] = {}  # (queue, resource) -> job waiting for that quota
        self.victims: set[str] = set()
        self.kept = self._wanted_devices()  # accelerator node classes whose devices queued jobs want
        self.spared: tuple[ClusterSnapshot, ClusterSnapshot] | None = None  # (view, view for CPU work)
        self.waiting_on: set[int] = set()  # node classes some waiting job would run on
        self.lending = False  # the second pass, for jobs that borrow
        self.deferring: set[tuple[str, str]] = set()  # (queue, resource) with a job deferred to borrow
        self.stopping = [job for job in state.running.values() if job.stopping]
        # Reclaim needs a queue over its quota and something preemptible to take back.
        self.borrowing = bool(state.preemptible_priorities) and any(
            self._over_own_quota(q) for q in self.queues.values() if q.cohort)
        self.decision = Decision()

    def run(self) -> Decision:
        """Jobs that stay within their queue's quota first, then those that borrow (as in Kueue):
        borrowing never takes what a cohort's owner is waiting for."""
        # Without reasons to explain, a queue whose first job exceeds its CPU quota is left out:
        # quota room only shrinks within a step, so that job and all behind it wait, and waiting
        # on quota they neither preempt nor reserve (nor hold back other queues).
        bound, borrowing = self._quota_bound()
        groups = self.state.pending.groups(skip=() if self.explain else bound)
        # A queue whose first job would borrow CPUs goes to the second pass whole: each of its jobs
        # would borrow too (``_borrows``).
        first, deferred = [], []
        for i, (_, jobs) in enumerate(groups):
            entry = (-jobs[0].priority, jobs[0].seq, i, 0)
            (deferred if jobs[0].queue in borrowing else first).append(entry)
        for name in borrowing:
            self.deferring.add((name, hardware.CPU))
        deferred += self._walk(groups, first)
        self.lending = True
        self._walk(groups, deferred)
        return self.decision

    def _walk(self, groups: list[tuple[int, list[QueuedJob]]], heap: list[tuple]) -> list[tuple]:
        """Consider jobs in order, each group's next job after its last admitted one; the deferred entries."""
        heapq.heapify(heap)
        deferred = []
        entries, self.keys = list(heap), None  # the placement keys of this pass, when needed
        while heap:
            entry = heapq.heappop(heap)
            _, _, i, pos = entry
            shape, jobs = groups[i]
            job = jobs[pos]
            if not self.explain and (job.queue, hardware.CPU) in self.behind:
                continue  # every job needs CPUs: its queue's CPU quota holds it, as it held a job before it
            reason = self._consider(job, self._key(shape, job.queue))
            if reason is _DEFER:
                deferred.append(entry)
            elif reason is None:
                if pos + 1 < len(jobs):
                    heapq.heappush(heap, (-job.priority, jobs[pos + 1].seq, i, pos + 1))
            elif self.explain:
                self.decision.waiting[job.id] = reason
                later = f"behind {job.id} (same queue, priority and resources)"
                self.decision.waiting.update((other.id, later) for other in jobs[pos + 1:])
            elif ((self.lending or not self._may_preempt_below(job.priority))
                  and self._all_failed(groups, entries)):
                return deferred  # nothing behind can start or preempt: skip the rest of the queue
        return deferred

    def _quota_bound(self) -> tuple[set[str], set[str]]:
        """Queues whose first job in order needs more CPUs than the queue may hold more now, and
        queues whose first job would borrow CPUs (take the queue beyond its own quota)."""
        bound, borrowing = set(), set()
        for name, job in self.state.pending.heads().items():
            queue = self.queues.get(name)
            if queue is not None and queue.quota and hardware.CPU in queue.quota:
                cpus = least_held(job.spec.resources)[hardware.CPU]
                if cpus > self._room(queue, hardware.CPU) + EPS:
                    bound.add(name)
                elif self.usage.get(name, {}).get(hardware.CPU, 0.0) + cpus > queue.quota[hardware.CPU] + EPS:
                    borrowing.add(name)
        return bound, borrowing

    def _all_failed(self, groups: list[tuple[int, list[QueuedJob]]], entries: list[tuple]) -> bool:
        """Every placement key of this pass failed this step (the view only shrinks within a step)."""
        if self.keys is None:
            self.keys = {self._key(groups[i][0], groups[i][1][0].queue) for _, _, i, _ in entries}
        return self.keys <= self.failed.keys()

    def _key(self, shape: int, queue: str) -> tuple:
        """Jobs with equal keys get equal plans: same resources, same quota caps."""
        key = self.keys_of.get((shape, queue))
        if key is None:
            key = self.keys_of[(shape, queue)] = self._new_key(shape, queue)
        return key

    def _new_key(self, shape: int, queue: str) -> tuple:
        config = self.queues.get(queue)
        if config is None or not config.quota:
            return shape, queue if config is None else None
        return shape, tuple(sorted((key, config.limit(key)) for key in config.quota))

    def _consider(self, job: QueuedJob, key: tuple) -> str | None:
        """Admit ``job`` (None) or say why it waits, preempting or reserving on the way."""
        # CPUs and memory per worker are the same for every accelerator option: a quota that
        # cannot hold them needs no plan to say so. Quota first: a job over its queue's quota
        # holds back the later jobs of its queue, whatever else it waits for.
        if self.lending and job.queue in self.holding:
            return f"queue {job.queue} does not borrow while {self.holding[job.queue]} preempts to start"
        least = least_held(job.spec.resources)
        over = self._over_quota(job, least)
        if over:
            return over
        if not self.lending and self._borrows(job, least):
            return _DEFER  # no need to plan it now: it is considered again with the jobs that borrow
        failed = self.failed.get(key)
        if failed is not None and not self._may_preempt(job, key):
            return failed
        result = allocator.plan(job.spec, self.view)
        if isinstance(result, Infeasible):
            return waits_for(result, self.free, ())
        need = plan_totals(result)
        over = self._over_quota(job, need)
        if over:
            return over
        if not self.lending and self._borrows(job, need):
            return _DEFER
        if result.status == "placeable":
            taken = self._takes_device_share(result, self.view)
            if taken:
                spared = allocator.plan(job.spec, self._spared_view())
                if not (isinstance(spared, Plan) and spared.status == "placeable"):
                    kept = (f"waits for CPUs: the free ones are on {', '.join(taken)}, "
                            f"kept for jobs waiting for its devices")
                    self.failed.setdefault(key, kept)
                    return kept
                result = spared
            self._admit(job, result, need)
            return None
        return self._blocked(job, key, result, need)

    # ---- CPU work on accelerator nodes -------------------------------------------------------

    def _wanted_devices(self) -> set[int]:
        """Accelerator node classes whose devices some queued job may run on, its queue's quota permitting."""
        index = self.free.index
        wanted: set[int] = set()
        for resources, queues in self.state.pending.shapes():
            key = ("queue: device classes", resources)
            classes = index.memo.get(key)
            if classes is None:
                classes = index.memo[key] = device_classes(resources, index)
            if classes and not classes <= wanted and any(self._may_hold(queue, resources) for queue in queues):
                wanted |= classes
        return wanted

    def _may_hold(self, name: str, resources: Resources) -> bool:
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
                need[hardware.GPU if option.kind == "gpu" else hardware.TPU] = float(option.count * workers)
            held = self.usage.get(name, {})
            if all(amount <= queue.limit(key) - held.get(key, 0.0) + EPS
                   for key, amount in need.items() if amount > EPS and key in queue.quota):
                return True
        return False

    def _takes_device_share(self, placed: Plan, free: ClusterSnapshot) -> list[str]:
        """Nodes where ``placed``, if CPU work, would take from ``free`` CPUs or memory that come
        with free devices that queued jobs want."""
        if not self.kept or device_kind(placed.per_worker) != hardware.CPU:
            return []
        index, taken = free.index, []
        for name, demand in placed.demand().items():
            pos = index.position[name]
            cid = index.class_of[pos]
            if cid in self.kept:
                node = free.nodes[pos]
                left = {key: node.free.get(key, 0.0) - amount for key, amount in demand.items()}
                share = device_share(index.classes[cid], node)
                if any(left.get(key, 0.0) < amount - EPS for key, amount in share.items()):
                    taken.append(name)
        return sorted(taken)

    def _spared_view(self) -> ClusterSnapshot:
        """The view less what comes with the free devices of wanted accelerator nodes: where CPU work may go."""
        if self.spared is None or self.spared[0] is not self.view:
            self.spared = (self.view, self._spared(self.view))
        return self.spared[1]

    def _spared(self, free: ClusterSnapshot) -> ClusterSnapshot:
        """``free`` less the CPUs and memory that come with the free devices of wanted accelerator nodes."""
        index, spared = free.index, {}
        for cid in self.kept:
            cls = index.classes[cid]
            for pos in cls.members:
                node = free.nodes[pos]
                share = device_share(cls, node)
                if share:
                    spared[node.name] = {**node.free, **{key: max(node.free.get(key, 0.0) - amount, 0.0)
                                                         for key, amount in share.items()}}
        return free.with_free(spared) if spared else free

    def _admit(self, job: QueuedJob, plan: Plan, need: Mapping[str, float]) -> None:
        if job.spec.sweep:
            plan = with_trials(job.spec, plan, self.view.allocate(plan.demand()), self.usage.get(job.queue, {}),
                               self.queues.get(job.queue), self._trial_slot(job.spec))
            need = plan_totals(plan)
        demand = plan.demand()
        self.free, self.view = self.free.allocate(demand), self.view.allocate(demand)
        usage = self.usage.setdefault(job.queue, dict.fromkeys(QUOTA_RESOURCES, 0.0))
        for key, amount in need.items():
            usage[key] += amount
        self.rooms.clear()
        self.decision.admit.append((job.id, plan))

    def _trial_slot(self, spec: JobSpec) -> Callable[[ClusterSnapshot], Plan | None]:
        """Where a sweep's next trial slot goes on what is left: as any job's plan, off the CPUs
        that come with devices queued jobs want when it is CPU work (``_consider``)."""
        def place(left: ClusterSnapshot) -> Plan | None:
            slot = placeable(allocator.plan(spec, left))
            if slot is not None and self._takes_device_share(slot, left):
                slot = placeable(allocator.plan(spec, self._spared(left)))
            return slot
        return place

    def _blocked(self, job: QueuedJob, key: tuple, queued: Plan, need: Mapping[str, float]) -> str:
        """``job`` fits its quota, not the view: behind a reservation, preempting, or waiting with one."""
        on_free = allocator.plan(job.spec, self.free) if self.reserved else queued
        classes = self._classes(queued)
        if on_free.status == "placeable":
            reason = self._behind(job, on_free)
            self.failed.setdefault(key, reason)
            self.waiting_on.update(classes)
            return reason
        # Preempt only where no job ahead waits: the next step re-plans those jobs first, and one
        # could take what the victims free, leaving this job to preempt again (and again).
        if classes & self.waiting_on:
            self.cannot_preempt.add(key)  # waiting_on only grows: no job of this key preempts this step
            preempting = None
        else:
            preempting = self._preempt(job, key, need)
        self.waiting_on.update(classes)
        if preempting:
            return preempting
        base = waits_for(queued, self.free, self.state.running.values()) if self.explain else "waits"
        self.failed.setdefault(key, base)
        return self._after_stopping(job, need) or base + self._reserve(job, queued)

    def _classes(self, placed: Plan) -> set[int]:
        index = self.view.index
        return {index.class_of[index.position[name]] for name in placed.nodes}

    def _behind(self, job: QueuedJob, on_free: Plan) -> str:
        nodes = sorted({n for n in on_free.nodes if n in self.holder})
        first = self.holder[nodes[0]]
        who = (f"higher-priority job {first.id}" if first.priority > job.priority
               else f"{first.id}, queued earlier at the same priority")
        return f"behind {who}: it fits the free resources, but {', '.join(nodes)} are reserved for jobs ahead"

    # ---- quotas ----------------------------------------------------------------------------

    def _over_quota(self, job: QueuedJob, need: Mapping[str, float]) -> str | None:
        queue = self.queues.get(job.queue)
        if queue is None or not queue.quota:
            return None
        for resource, amount in need.items():
            if amount <= EPS or resource not in queue.quota:
                continue
            first = self.behind.get((queue.name, resource))
            if first:
                return f"behind {first} in queue {queue.name}, which waits for the queue's {resource} quota"
            room = self._room(queue, resource)
            if amount > room + EPS:
                self.behind[(queue.name, resource)] = job.id
                return self._quota_text(queue, resource, amount, room) if self.explain else "over quota"
        return None

    def _room(self, queue: QueueConfig, resource: str) -> float:
        """``quota_room`` of ``queue``, remembered until usage changes (an admission)."""
        room = self.rooms.get((queue.name, resource))
        if room is None:
            room = self.rooms[(queue.name, resource)] = quota_room(queue, resource, self.usage, self._cohort(queue))
        return room

    def _quota_text(self, queue: QueueConfig, resource: str, amount: float, room: float) -> str:
        held = self.usage.get(queue.name, {}).get(resource, 0.0)
        quota = queue.quota[resource]
        have, limit = amount_text(resource, held), amount_text(resource, quota)
        if held + EPS < quota:
            text = f"queue {queue.name} would exceed its quota ({resource} {have} held + {amount_text(resource, amount)} needed > {limit})"
        else:
            borrowed = f", {amount_text(resource, held - quota)} borrowed" if held > quota + EPS else ""
            text = f"queue {queue.name} is at its quota ({resource} {have} of {limit}{borrowed})"
        borrow = (queue.borrow or {}).get(resource)
        if borrow:
            text += (f"; borrowing from cohort {queue.cohort} (up to {amount_text(resource, borrow)}) "
                     f"it may hold {amount_text(resource, max(room, 0.0))} more now")
        return text

    def _borrows(self, job: QueuedJob, need: Mapping[str, float]) -> bool:
        """``job`` would take its queue beyond its own quota, or a job of its queue ahead of it does."""
        queue = self.queues.get(job.queue)
        held = self.usage.get(job.queue, {})
        over = False
        for key, quota in ((queue.quota or {}) if queue else {}).items():
            if need.get(key, 0.0) > EPS and ((queue.name, key) in self.deferring
                                              or held.get(key, 0.0) + need[key] > quota + EPS):
                self.deferring.add((queue.name, key))
                over = True
        return over

    def _cohort(self, queue: QueueConfig) -> list[QueueConfig]:
        return self.cohorts.get(queue.cohort, []) if queue.cohort else []

    def _over_own_quota(self, queue: QueueConfig) -> bool:
        held = self.usage.get(queue.name, {})
        return any(held.get(key, 0.0) > amount + EPS for key, amount in (queue.quota or {}).items())

    def _reclaim_from(self, job: QueuedJob, need: Mapping[str, float]) -> set[str]:
        """Cohort queues over their quota that ``job`` may reclaim from: its queue stays within its own."""
        queue = self.queues.get(job.queue)
        if queue is None or not queue.quota or not queue.cohort:
            return set()
        held = self.usage.get(queue.name, {})
        wanted = [key for key in queue.quota if need.get(key, 0.0) > EPS]
        if not wanted or any(held.get(k, 0.0) + need[k] > queue.quota[k] + EPS for k in wanted):
            return set()
        return {other.name for other in self._cohort(queue)
                if other.name != queue.name and any(
                    self.usage.get(other.name, {}).get(k, 0.0) > other.quota[k] + EPS
                    for k in wanted if other.quota and k in other.quota)}

    # ---- preemption ------------------------------------------------------------------------

    def _may_preempt_below(self, priority: int) -> bool:
        """Could some job of ``priority`` or lower still preempt or reclaim?"""
        return any(p < priority for p in self.state.preemptible_priorities) or self.borrowing

    def _may_preempt(self, job: QueuedJob, key: tuple) -> bool:
        # A job that must borrow does not preempt: jobs within their quota go first, so they
        # would take what its victims free (borrowing uses only what is left unused).
        if self.lending or (key, job.queue, job.priority) in self.tried:
            return False
        # Shortcuts from jobs like it, unless jobs are stopping: then it goes on to claim what they free.
        if not self.stopping:
            if key in self.cannot_preempt:
                return False
            failures = self.no_victims.get((key, job.priority))
            if failures and any(self._may_reclaim_from(job) <= earlier for earlier in failures):
                return False  # a job like it found no victims among as many candidates or more
        return self._may_preempt_below(job.priority)

    def _may_reclaim_from(self, job: QueuedJob) -> frozenset[str]:
        """A superset of what ``_reclaim_from`` gives ``job``, without its plan: the other queues of its
        cohort over their quota, when its queue stays within its own quota."""
        queue = self.queues.get(job.queue)
        if not self.borrowing or queue is None or not queue.quota or not queue.cohort:
            return frozenset()
        held = self.usage.get(queue.name, {})
        for key, amount in least_held(job.spec.resources).items():
            if amount > EPS and key in queue.quota and held.get(key, 0.0) + amount > queue.quota[key] + EPS:
                return frozenset()
        return frozenset(other.name for other in self._cohort(queue)
                         if other.name != queue.name and self._over_own_quota(other))

    def _preempt(self, job: QueuedJob, key: tuple, need: Mapping[str, float]) -> str | None:
        """Ask the fewest suitable victims to stop so ``job`` fits; the reason it waits, or None."""
        if not self._may_preempt(job, key):
            return None
        self.tried.add((key, job.queue, job.priority))
        kind = device_kind(need)
        reclaim = self._reclaim_from(job, need)
        # CPU work preempts only CPU work: a device job's CPUs come with its devices, and once
        # requeued it would want them back.
        cpu_work = kind == hardware.CPU
        candidates = sorted(
            (r for r in self.state.running.values() if r.preemptible and not r.stopping and r.id not in self.victims
             and r.held[kind] > 0 and (r.priority < job.priority or r.queue in reclaim)
             and not (cpu_work and (r.held[hardware.GPU] or r.held[hardware.TPU]))),
            key=lambda r: (r.priority, -r.held[kind], -r.started))
        victims, fit = self._victims(job, candidates)
        if not victims or self._classes(fit) & self.waiting_on:
            # Within a step candidates only get fewer and the free resources less: a job of this key
            # and priority with no more queues to reclaim from need not look again.
            self.no_victims.setdefault((key, job.priority), []).append(frozenset(reclaim))
            return None
        for victim in victims:
            why = "higher-priority" if victim.priority < job.priority else f"queue {job.queue} reclaims its quota for"
            self.decision.preempt.append((victim.id, f"preempted: {why} job {job.id} needs its resources"))
            self.decision.preempted_for[victim.id] = job.id
            self.victims.add(victim.id)
        self._reserve_demand(job, fit.demand())
        self._hold_quota(job, need)
        return f"preempting {', '.join(v.id for v in victims)} to start"

    def _victims(self, job: QueuedJob, candidates: list[RunningJob]) -> tuple[list[RunningJob], Plan | None]:
        """Victims in candidate order until ``job`` fits, less those it fits without."""
        if not candidates or not self._fits(job, candidates):
            return [], None
        chosen: list[RunningJob] = []
        released = self.free
        fit = None
        for candidate in candidates:
            if candidate.priority >= job.priority and not self._still_borrowing(candidate, chosen):
                continue  # reclaim takes back what a queue borrowed, no more
            chosen.append(candidate)
            released = released.release(candidate.demand)
            fit = self._fits_on(job, released)
            if fit:
                break
        if not fit:
            return [], None
        for victim in reversed(chosen[:-1]):  # highest priority first
            rest = [c for c in chosen if c is not victim]
            fewer = self._fits(job, rest)
            if fewer:
                chosen, fit = rest, fewer
        return self._smallest_alone(job, chosen, fit, candidates)

    def _smallest_alone(self, job: QueuedJob, chosen: list[RunningJob], fit: Plan,
                        candidates: list[RunningJob]) -> tuple[list[RunningJob], Plan]:
        """One victim is as few as it gets: prefer the smallest of its priority that frees enough."""
        if len(chosen) != 1:
            return chosen, fit
        kind, only = device_kind(fit.per_worker), chosen[0]
        need = fit.per_worker.get(kind, 0.0) * fit.workers
        smaller = [c for c in candidates if c.priority == only.priority and need <= c.held[kind] < only.held[kind]]
        for candidate in sorted(smaller, key=lambda c: c.held[kind]):
            alone = self._fits(job, [candidate])
            if alone:
                return [candidate], alone
        return chosen, fit

    def _still_borrowing(self, candidate: RunningJob, chosen: list[RunningJob]) -> bool:
        queue = self.queues[candidate.queue]
        held = dict(self.usage.get(queue.name, {}))
        for other in chosen:
            if other.queue == queue.name:
                for key, amount in other.held.items():
                    held[key] -= amount
        return any(held.get(k, 0.0) > amount + EPS and candidate.held[k] > 0 for k, amount in (queue.quota or {}).items())

    def _fits(self, job: QueuedJob, victims: list[RunningJob]) -> Plan | None:
        released = self.free
        for victim in victims:
            released = released.release(victim.demand)
        return self._fits_on(job, released)

    def _fits_on(self, job: QueuedJob, free: ClusterSnapshot) -> Plan | None:
        view = self._view_of(free)
        result = allocator.plan(job.spec, view)
        if isinstance(result, Plan) and result.status == "placeable" and self._takes_device_share(result, view):
            result = allocator.plan(job.spec, self._spared(view))  # where CPU work may go, as in _consider
        return result if isinstance(result, Plan) and result.status == "placeable" else None

    def _after_stopping(self, job: QueuedJob, need: Mapping[str, float]) -> str | None:
        """``job`` fits once the jobs asked to stop have stopped: claim what they free."""
        stopping = [r for r in self.stopping if r.id not in self.victims]
        if not stopping:
            return None
        fit = self._fits(job, stopping)
        if not fit:
            return None
        self._reserve_demand(job, fit.demand())
        self._hold_quota(job, need)
        freed = sorted({r.id for r in stopping if set(r.demand) & set(fit.nodes)})
        return f"waits for preempted {named(freed, 'jobs')} to stop"

    # ---- reservations ----------------------------------------------------------------------

    def _reserve(self, job: QueuedJob, queued: Plan) -> str:
        """Reserve for ``job`` the least busy nodes it could run on; the text for its reason."""
        if self.reservations >= RESERVATIONS:
            return ""
        self.reservations += 1
        view, index = self.view, self.view.index
        kind = device_kind(queued.per_worker)
        classes = {index.class_of[index.position[name]] for name in queued.nodes}
        members = sorted((p for c in classes for p in index.classes[c].members),
                         key=lambda p: busy(view.nodes[p], kind))
        count = 1
        while True:
            emptied = {view.nodes[p].name: dict(view.nodes[p].total) for p in members[:count]}
            fit = self._fits_on(job, self.free.with_free(emptied))
            if fit:
                self._reserve_demand(job, fit.demand())
                return f"; {', '.join(sorted(set(fit.nodes)))} reserved for it"
            if count >= len(members):
                return ""
            count = min(2 * count, len(members))

    def _hold_quota(self, job: QueuedJob, need: Mapping[str, float]) -> None:
        """Count ``need`` as held by ``job``'s queue for the rest of the step, and keep the queue from
        borrowing: else its later jobs would take the quota that ``job`` preempts to use, and once
        the victims stop it would have to borrow, which never preempts, and could not start."""
        usage = self.usage.setdefault(job.queue, dict.fromkeys(QUOTA_RESOURCES, 0.0))
        for key, amount in need.items():
            usage[key] += amount
        self.rooms.clear()
        self.holding.setdefault(job.queue, job.id)

    def _reserve_demand(self, job: QueuedJob, demand: Mapping[str, Mapping[str, float]]) -> None:
        for name, resources in demand.items():
            held = self.reserved.setdefault(name, {})
            for key, amount in resources.items():
                held[key] = held.get(key, 0.0) + amount
            self.holder.setdefault(name, job)
        self.view = self._view_of(self.free)

    def _view_of(self, free: ClusterSnapshot) -> ClusterSnapshot:
        """``free`` less the reservations."""
        if not self.reserved:
            return free
        return free.with_free({name: {key: max(value - held.get(key, 0.0), 0.0)
                                      for key, value in free.node(name).free.items()}
                               for name, held in self.reserved.items()})
