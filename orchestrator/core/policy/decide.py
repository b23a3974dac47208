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
  big one. Without runtime estimates this is the conservative rule: it never
  guesses whether a backfilled job ends in time. With them (``QueuedJob.
  estimate_s``/``limit_s``, ``RunningJob`` likewise, ``QueueState.now``) it is
  EASY backfill, Slurm's rule: a reservation's shadow time is when the jobs on
  its nodes are expected to have freed enough (unknown when one that must end
  first has no estimate), and a later job may use reserved resources when its
  estimate, bounded by its time limit, says it ends by then. A job that
  overruns its estimate is never stopped for it: it is expected to end any
  moment, so the next step's reservation has its shadow now and nothing more
  backfills onto it. Jobs of one group (same queue, priority and resources)
  are each considered for backfill: their estimates differ.
  Reservations are recomputed each step; a reserved node only drains (nothing
  lower in the order lands on it, save what ends before its shadow), so each
  waiting job does start.
  Only the first ``RESERVATIONS`` waiting jobs of a step hold one, the usual
  bound on conservative backfill: deeper reservations would idle the cluster.
- Hardware by expected finish: a job that leaves the type to orch (``any_of``,
  ``GPU:N``, ``auto``) and whose estimate differs by type takes the option
  expected to finish first (expected start, now or a reservation's shadow
  time, plus its runtime there), ties by price; it may hold out for a busy
  faster type, with a reservation, when that finishes sooner (policy/finish.py).
  Later jobs of its group may still take the slower type it passed over.
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
from enum import Enum
from typing import Mapping

from orchestrator.core import allocator, hardware
from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.policy.admission import QuotaGate
from orchestrator.core.policy.backfill import Backfill
from orchestrator.core.policy.books import Books
from orchestrator.core.policy.devices import DeviceGuard
from orchestrator.core.policy.finish import FinishChoice, FinishChooser
from orchestrator.core.policy.preempt import Preemptor
from orchestrator.core.policy.quota import least_held, plan_totals
from orchestrator.core.policy.reasons import (
    BehindInGroup,
    BehindReservation,
    CpusKept,
    HoldsOut,
    NoBorrowWhilePreempting,
    Reason,
    WaitsForResources,
    why_not,
)
from orchestrator.core.policy.reserve import Reservations
from orchestrator.core.policy.slots import with_trials
from orchestrator.core.policy.state import Decision, QueuedJob, QueueState
from orchestrator.core.snapshot import EPS

POLICIES = ("orch", "fifo")


class Turn(Enum):
    """What became of a job considered, when it does not wait."""

    ADMITTED = "admitted"
    BORROWS = "borrows"  # it would take its queue beyond its own quota: its turn is in the second pass


def decide(state: QueueState, policy: str = "orch", explain: bool = True) -> Decision:
    """The policy's decision for ``state``. ``explain=False`` leaves the waiting reasons out, for
    simulations of many jobs; the decision is the same either way."""
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
            waiting: dict[str, Reason] = {job.id: why_not(result, free, state.running.values())}
            behind = BehindInGroup(job.id, fifo=True)
            waiting.update((later.id, behind) for later in jobs)
            decision.waiting = _rendered(waiting)
        break
    return decision


def _rendered(waiting: Mapping[str, Reason]) -> dict[str, str]:
    """The reasons as the text users see; one text per reason object (jobs behind one share it)."""
    texts: dict[int, str] = {}
    return {job: texts.setdefault(id(reason), reason.text()) if id(reason) in texts else
            texts.setdefault(id(reason), reason.text()) for job, reason in waiting.items()}


# ---- policy orch: one step ---------------------------------------------------------------


class _Step:
    """One ``decide`` call of policy orch: the order jobs are considered in, and what becomes of
    each. Its parts (quota gate, device guard, preemptor, reservations) answer over its books."""

    def __init__(self, state: QueueState, explain: bool):
        self.state, self.explain = state, explain
        self.books = Books(state)
        self.gate = QuotaGate(self.books)
        self.devices = DeviceGuard(self.books, state.pending, self.gate)
        self.preemptor = Preemptor(state, self.books, self.gate, self.devices)
        self.reservations = Reservations(self.books, self.devices)
        self.finish = FinishChooser(self.books, self.reservations)
        self.keys_of: dict[tuple[int, str], tuple] = {}
        self.failed: dict[tuple, Reason] = {}  # placement keys that did not fit the view -> why
        self.backfill = Backfill(state, self.books, self.gate, self.devices)
        self.waiting_on: set[int] = set()  # node classes some waiting job would run on
        self.lending = False  # the second pass, for jobs that borrow
        self.waiting: dict[str, Reason] = {}
        self.bound: set[str] = set()  # queues whose first job waits for the CPU quota
        self.decision = Decision()

    def run(self) -> Decision:
        """Jobs that stay within their queue's quota first, then those that borrow (as in Kueue):
        borrowing never takes what a cohort's owner is waiting for."""
        self.bound, borrowing = self.gate.bound(self.state.pending)
        groups = self.state.pending.groups()
        # A queue whose first job needs more CPUs than it may hold more waits whole: quota room only
        # shrinks within a step, so that job waits for the quota and every other job of the queue
        # behind it, and none of them changes anything: its jobs are walked only to word why.
        # A queue whose first job would borrow CPUs goes to the second pass whole: each of its jobs
        # would borrow too (``QuotaGate.borrows``).
        first, deferred = [], []
        for i, (_, jobs) in enumerate(groups):
            queue, entry = jobs[0].queue, (-jobs[0].priority, jobs[0].seq, i, 0)
            if queue not in self.bound or self.explain:
                (deferred if queue in borrowing else first).append(entry)
        self.gate.deferring.update((name, hardware.CPU) for name in borrowing)
        deferred += self._walk(groups, first)
        self.lending = True
        self._walk(groups, deferred)
        if self.explain:
            self.decision.waiting = _rendered(self.waiting)
        return self.decision

    def _walk(self, groups: list[tuple[int, list[QueuedJob]]], heap: list[tuple]) -> list[tuple]:
        """Consider jobs in order, each group's next job after its last admitted one; the deferred entries.

        A job whose queue's CPU quota holds it changes nothing, and once ``_settled`` nothing
        behind can start, preempt or reserve: walking such jobs only words their reasons, so a
        step that is not asked for reasons passes them by. That is all ``explain`` changes; both
        take the same decisions.
        """
        heapq.heapify(heap)
        deferred = []
        entries, self.keys = list(heap), None  # the placement keys of this pass, when needed
        while heap:
            entry = heapq.heappop(heap)
            _, _, i, pos = entry
            shape, jobs = groups[i]
            job, queue = jobs[pos], jobs[pos].queue
            if queue in self.bound or ((queue, hardware.CPU) in self.gate.behind and job.spec.resources.cpus > EPS):
                # Its queue's CPU quota holds it (as it held a job of the queue before it): it waits,
                # as ``_consider`` says (quota first, CPUs first), and changes nothing.
                if self.explain:
                    self._wait(jobs, pos, self._consider(job, self._key(shape, queue)))
                continue
            outcome = self._consider(job, self._key(shape, queue))
            if outcome is Turn.BORROWS:
                deferred.append(entry)
                continue
            if outcome is Turn.ADMITTED:
                self.waiting.pop(job.id, None)  # it was behind its group's first, which waits
            elif self.explain:
                self._wait(jobs, pos, outcome)
            if pos + 1 < len(jobs) and (outcome is Turn.ADMITTED or self._may_backfill(outcome)):
                heapq.heappush(heap, (-job.priority, jobs[pos + 1].seq, i, pos + 1))
            elif outcome is not Turn.ADMITTED and not self.explain and self._settled(job, groups, entries):
                return deferred
        return deferred

    def _may_backfill(self, outcome: Turn | Reason) -> bool:
        """Whether a later job of a group whose job waits for ``outcome`` may still start: it may
        backfill onto reserved resources when its estimate ends before their shadow time, and
        behind a job that holds out for a faster type, take the slower one that is free."""
        return isinstance(outcome, HoldsOut) or (isinstance(outcome, BehindReservation) and self.books.timed)

    def _wait(self, jobs: list[QueuedJob], pos: int, reason: Reason) -> None:
        """``jobs[pos]`` waits for ``reason``, and the later jobs of its group behind it."""
        self.waiting[jobs[pos].id] = reason
        later = BehindInGroup(jobs[pos].id)
        self.waiting.update((other.id, later) for other in jobs[pos + 1:])

    def _settled(self, job: QueuedJob, groups: list[tuple[int, list[QueuedJob]]], entries: list[tuple]) -> bool:
        """After ``job`` waits, no job later in this pass can preempt (it borrows, or no preemptible
        job runs below its priority) and every placement key of the pass failed this step (the
        view only shrinks within a step). The jobs of bound queues have no say: they wait for their
        quota."""
        if not self.lending and self.preemptor.may_preempt_below(job.priority):
            return False
        if self.books.timed and self.books.shadow:
            return False  # a later job may end before a reservation starts
        if self.keys is None:
            self.keys = {self._key(groups[i][0], groups[i][1][0].queue) for _, _, i, _ in entries
                         if groups[i][1][0].queue not in self.bound}
        return self.keys <= self.failed.keys()

    def _key(self, shape: int, queue: str) -> tuple:
        """Jobs with equal keys get equal plans: same resources, same quota caps."""
        key = self.keys_of.get((shape, queue))
        if key is None:
            config = self.books.queues.get(queue)
            if config is None or not config.quota:
                key = shape, queue if config is None else None
            else:
                key = shape, tuple(sorted((name, config.limit(name)) for name in config.quota))
            self.keys_of[(shape, queue)] = key
        return key

    def _consider(self, job: QueuedJob, key: tuple) -> Turn | Reason:
        """Admit ``job``, or defer it to the second pass, or say why it waits, preempting or reserving on the way."""
        # CPUs and memory per worker are the same for every accelerator option: a quota that
        # cannot hold them needs no plan to say so. Quota first: a job over its queue's quota
        # holds back the later jobs of its queue, whatever else it waits for.
        holding = self.books.holding
        if self.lending and job.queue in holding:
            return NoBorrowWhilePreempting(job.queue, holding[job.queue])
        least = least_held(job.spec.resources)
        over = self.gate.over_quota(job, least)
        if over:
            return over
        if not self.lending and self.gate.borrows(job, least):
            return Turn.BORROWS  # no need to plan it now: it is considered again with the jobs that borrow
        failed = self.failed.get(key)
        if failed is not None and not self.preemptor.may_preempt(job, key, self.lending):
            if isinstance(failed, BehindReservation) and job.timed:
                return self._backfill(job, key) or failed
            return failed
        result = allocator.plan(job.spec, self.books.view)
        if isinstance(result, Infeasible):
            return why_not(result, self.books.free, ())
        choice = self.finish.choose(job, key)
        if choice is not None:
            result = choice.plan
        need = plan_totals(result)
        over = self.gate.over_quota(job, need)
        if over:
            return over
        if not self.lending and self.gate.borrows(job, need):
            return Turn.BORROWS
        if choice is not None:
            self.decision.finish[job.id] = choice
            if choice.holds_out:
                return self._hold_out(job, choice)
        if result.status == "placeable":
            return self._start(job, key, result, need)
        return self._blocked(job, key, result, need, choice)

    def _start(self, job: QueuedJob, key: tuple, result: Plan, need: Mapping[str, float]) -> Turn | Reason:
        """Admit ``job``, off the device share when it is CPU work; why it waits when it cannot be."""
        taken = self.devices.takes_share(result, self.books.view)
        if taken:
            spared = allocator.plan(job.spec, self.devices.spared_view())
            if not (isinstance(spared, Plan) and spared.status == "placeable"):
                kept = CpusKept(tuple(taken))
                self.failed.setdefault(key, kept)
                return kept
            result = spared
        self._admit(job, result, need)
        return Turn.ADMITTED

    def _hold_out(self, job: QueuedJob, choice: FinishChoice) -> HoldsOut:
        """``job`` waits for the busy type it is expected to finish soonest on, and reserves it
        (``FinishChooser`` weighs waiting only while the step may hold a reservation)."""
        chosen = choice.chosen
        self.reservations.take()
        self.books.reserve(job, chosen.reserve.demand(), chosen.start)
        self.waiting_on.update(self.books.classes(chosen.plan))
        return HoldsOut(choice, tuple(sorted(set(chosen.reserve.nodes))))

    def _admit(self, job: QueuedJob, plan: Plan, need: Mapping[str, float], reserved: bool = False) -> None:
        if job.spec.sweep:
            books = self.books
            plan = with_trials(job.spec, plan, books.view.allocate(plan.demand()), books.held(job.queue),
                               books.queues.get(job.queue), lambda left: self.devices.place(job.spec, left))
            need = plan_totals(plan)
        self.books.take(job, plan, need, reserved)
        self.decision.admit.append((job.id, plan))

    def _backfill(self, job: QueuedJob, key: tuple) -> Turn | None:
        """Admit ``job`` onto reserved resources when ``Backfill`` lets it; None when it may not."""
        found = self.backfill.slot(job, key, self.lending)
        if found is None:
            return None
        placed, need, until = found
        self._admit(job, placed, need, reserved=True)
        self.decision.backfilled[job.id] = until
        return Turn.ADMITTED

    def _blocked(self, job: QueuedJob, key: tuple, queued: Plan, need: Mapping[str, float],
                 choice: FinishChoice | None = None) -> Reason:
        """``job`` fits its quota, not the view: behind a reservation, preempting, or waiting with one
        (``choice``: its type was chosen by expected finish)."""
        on_free = allocator.plan(job.spec, self.books.free) if self.books.reserved else queued
        classes = self.books.classes(queued)
        if on_free.status == "placeable":
            backfilled = self._backfill(job, key) if job.timed else None
            if backfilled:
                return backfilled
            first, nodes = self.reservations.holder(on_free)
            reason = BehindReservation(first.id, first.priority > job.priority, tuple(nodes))
            self.failed.setdefault(key, reason)
            self.waiting_on.update(classes)
            return reason
        # Preempt only where no job ahead waits: the next step re-plans those jobs first, and one
        # could take what the victims free, leaving this job to preempt again (and again).
        if classes & self.waiting_on:
            self.preemptor.cannot_preempt.add(key)  # waiting_on only grows: no job of this key preempts this step
            preemption = None
        else:
            preemption = self.preemptor.choose(job, key, need, self.lending, self.waiting_on)
        self.waiting_on.update(classes)
        if preemption:
            return self.preemptor.book(job, preemption, need, self.decision)
        base = WaitsForResources(queued, self.books.free, self.state.running.values())
        self.failed.setdefault(key, base)
        return self.preemptor.claim_stopping(job, need) or self._reserve(job, queued, base, choice)

    def _reserve(self, job: QueuedJob, queued: Plan, base: WaitsForResources,
                 choice: FinishChoice | None = None) -> WaitsForResources:
        """Reserve for ``job`` the least busy nodes it could run on, when it may hold a reservation;
        its type chosen by expected finish, the nodes it is expected to start on soonest, as weighed."""
        if choice is not None:
            fit, shadow = (choice.chosen.reserve if self.reservations.take() else None), choice.chosen.start
        else:
            fit = self.reservations.place(job, queued)
            shadow = None if fit is None or not self.books.timed else self.reservations.shadow(fit.demand())
        if fit is None:
            return base
        self.books.reserve(job, fit.demand(), shadow)
        return base.with_reserved(fit.nodes)
