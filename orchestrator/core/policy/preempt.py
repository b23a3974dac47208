"""Preemption within one step: which running jobs a waiting job may stop, and which it stops.

The rules are in decide.py's docstring. The parts here only choose: a
``Preemption`` (or a claim on jobs already stopping) comes back as data, and
the step books it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from orchestrator.core import hardware
from orchestrator.core.allocator import Plan
from orchestrator.core.policy.admission import QuotaGate
from orchestrator.core.policy.books import Books
from orchestrator.core.policy.devices import DeviceGuard
from orchestrator.core.policy.reasons import Preempting, WaitsForStopping, device_kind
from orchestrator.core.policy.state import Decision, QueuedJob, QueueState, RunningJob
from orchestrator.core.snapshot import EPS


@dataclass(frozen=True)
class Preemption:
    """``victims`` to stop so that the job fits as ``fit``; ``reclaim``: whether each stops for a
    queue reclaiming its quota (else for a higher-priority job)."""

    victims: list[RunningJob]
    reclaim: list[bool]
    fit: Plan


class Preemptor:
    """The preemption questions of one step; what it has tried and chosen so far."""

    def __init__(self, state: QueueState, books: Books, gate: QuotaGate, devices: DeviceGuard):
        self.state, self.books, self.gate, self.devices = state, books, gate, devices
        self.tried: set[tuple] = set()  # (placement key, queue, priority) that looked for victims
        self.no_victims: dict[tuple, list[frozenset[str]]] = {}  # (key, priority) -> reclaim sets that found none
        self.cannot_preempt: set[tuple] = set()  # placement keys whose nodes a job ahead waits for
        self.victims: set[str] = set()
        self.stopping = [job for job in state.running.values() if job.stopping]
        # Reclaim needs a queue over its quota and something preemptible to take back.
        self.borrowing = bool(state.preemptible_priorities) and any(
            books.over_own_quota(q) for q in books.queues.values() if q.cohort)

    def book(self, job: QueuedJob, preemption: Preemption, need: Mapping[str, float],
             decision: Decision) -> Preempting:
        """Book ``preemption`` into ``decision``: the victims stop, and ``job`` holds what they
        free and its quota."""
        for victim, reclaim in zip(preemption.victims, preemption.reclaim):
            why = f"queue {job.queue} reclaims its quota for" if reclaim else "higher-priority"
            decision.preempt.append((victim.id, f"preempted: {why} job {job.id} needs its resources"))
            decision.preempted_for[victim.id] = job.id
        self.books.reserve(job, preemption.fit.demand())
        self.books.hold_quota(job, need)
        return Preempting(tuple(v.id for v in preemption.victims))

    def claim_stopping(self, job: QueuedJob, need: Mapping[str, float]) -> WaitsForStopping | None:
        """``job`` fits once the jobs asked to stop have stopped: claim what they free."""
        claim = self.after_stopping(job)
        if claim is None:
            return None
        fit, freed = claim
        self.books.reserve(job, fit.demand())
        self.books.hold_quota(job, need)
        return WaitsForStopping(tuple(freed))

    def may_preempt_below(self, priority: int) -> bool:
        """Could some job of ``priority`` or lower still preempt or reclaim?"""
        return any(p < priority for p in self.state.preemptible_priorities) or self.borrowing

    def may_preempt(self, job: QueuedJob, key: tuple, lending: bool) -> bool:
        # A job that must borrow does not preempt: jobs within their quota go first, so they
        # would take what its victims free (borrowing uses only what is left unused).
        if lending or (key, job.queue, job.priority) in self.tried:
            return False
        # Shortcuts from jobs like it, unless jobs are stopping: then it goes on to claim what they free.
        if not self.stopping:
            if key in self.cannot_preempt:
                return False
            failures = self.no_victims.get((key, job.priority))
            if failures and any(self._may_reclaim_from(job) <= earlier for earlier in failures):
                return False  # a job like it found no victims among as many candidates or more
        return self.may_preempt_below(job.priority)

    def _may_reclaim_from(self, job: QueuedJob) -> frozenset[str]:
        return self.gate.may_reclaim_from(job) if self.borrowing else frozenset()

    def choose(self, job: QueuedJob, key: tuple, need: Mapping[str, float], lending: bool,
               waiting_on: set[int]) -> Preemption | None:
        """The fewest suitable victims whose stopping makes ``job`` fit, on node classes no job
        ahead waits for (``waiting_on``); None when there are none."""
        if not self.may_preempt(job, key, lending):
            return None
        self.tried.add((key, job.queue, job.priority))
        kind = device_kind(need)
        reclaim = self.gate.reclaim_from(job, need)
        # CPU work preempts only CPU work: a device job's CPUs come with its devices, and once
        # requeued it would want them back.
        cpu_work = kind == hardware.CPU
        candidates = sorted(
            (r for r in self.state.running.values() if r.preemptible and not r.stopping and r.id not in self.victims
             and r.held[kind] > 0 and (r.priority < job.priority or r.queue in reclaim)
             and not (cpu_work and (r.held[hardware.GPU] or r.held[hardware.TPU]))),
            key=lambda r: (r.priority, -r.held[kind], -r.started))
        victims, fit = self._victims(job, candidates)
        if not victims or self.books.classes(fit) & waiting_on:
            # Within a step candidates only get fewer and the free resources less: a job of this key
            # and priority with no more queues to reclaim from need not look again.
            self.no_victims.setdefault((key, job.priority), []).append(frozenset(reclaim))
            return None
        self.victims.update(victim.id for victim in victims)
        return Preemption(victims, [victim.priority >= job.priority for victim in victims], fit)

    def _victims(self, job: QueuedJob, candidates: list[RunningJob]) -> tuple[list[RunningJob], Plan | None]:
        """Victims in candidate order until ``job`` fits, less those it fits without."""
        if not candidates or not self.fits(job, candidates):
            return [], None
        chosen: list[RunningJob] = []
        released = self.books.free
        fit = None
        for candidate in candidates:
            if candidate.priority >= job.priority and not self._still_borrowing(candidate, chosen):
                continue  # reclaim takes back what a queue borrowed, no more
            chosen.append(candidate)
            released = released.release(candidate.demand)
            fit = self.devices.fits_on(job.spec, released)
            if fit:
                break
        if not fit:
            return [], None
        for victim in reversed(chosen[:-1]):  # highest priority first
            rest = [c for c in chosen if c is not victim]
            fewer = self.fits(job, rest)
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
            alone = self.fits(job, [candidate])
            if alone:
                return [candidate], alone
        return chosen, fit

    def _still_borrowing(self, candidate: RunningJob, chosen: list[RunningJob]) -> bool:
        queue = self.books.queues[candidate.queue]
        held = dict(self.books.held(queue.name))
        for other in chosen:
            if other.queue == queue.name:
                for key, amount in other.held.items():
                    held[key] -= amount
        return any(held.get(k, 0.0) > amount + EPS and candidate.held[k] > 0 for k, amount in (queue.quota or {}).items())

    def fits(self, job: QueuedJob, victims: list[RunningJob]) -> Plan | None:
        """Where ``job`` would start once ``victims`` stopped."""
        released = self.books.free
        for victim in victims:
            released = released.release(victim.demand)
        return self.devices.fits_on(job.spec, released)

    def after_stopping(self, job: QueuedJob) -> tuple[Plan, list[str]] | None:
        """Where ``job`` fits once the jobs asked to stop have stopped, and those it waits for."""
        stopping = [r for r in self.stopping if r.id not in self.victims]
        if not stopping:
            return None
        fit = self.fits(job, stopping)
        if not fit:
            return None
        return fit, sorted({r.id for r in stopping if set(r.demand) & set(fit.nodes)})
