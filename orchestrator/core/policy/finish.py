"""Hardware by expected finish (DESIGN.md "Durations"): a job that leaves the accelerator type
to orch (``any_of``, ``GPU:N``, ``auto``) and whose runtime is known per type
(``QueuedJob.estimate_by_accelerator``) takes the option expected to finish first.

Each type the job fits (``allocator.alternatives``) is expected to start now when the view
holds it, else when the nodes of that type expected to hold it soonest have freed enough, behind
the reservations already on them (``Reservations.soonest``: the running jobs' expected ends, as
for EASY backfill's shadow time); its expected finish is that start plus the job's runtime
there, bounded by its time limit. Holding out reserves those nodes. The earliest finish wins; at an equal finish
an option that starts now goes before one that waits (holding out is for finishing sooner, not
as soon), then the lower list price. Holding out for a busy faster type is a reservation like
any other, so a job holds out only while the step may still hold one; else it weighs only what
starts now.

Today's rules stay wherever this cannot judge: an ordered list (the user's order), a job whose
estimate does not depend on the type (every type is equal, so the allocator's choice stands), a
job whose runtime on some type it fits is unknown, and options whose start nobody can tell (a job
that must end first has no estimate) are not weighed.
PURE: no Ray, no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from orchestrator.core import allocator, hardware
from orchestrator.core.allocator import Plan
from orchestrator.core.forms import AcceleratorChoice
from orchestrator.core.policy.state import QueuedJob
from orchestrator.core.spec import JobSpec

if TYPE_CHECKING:
    from orchestrator.core.policy.books import Books
    from orchestrator.core.policy.reserve import Reservations
    from orchestrator.core.snapshot import ClusterSnapshot

# Finishes closer than this are equal: the price decides (estimates are never this exact).
TIE_S = 1e-3


@dataclass(frozen=True)
class Outlook:
    """One option of a job as weighed: its plan, when it is expected to start and finish
    (absolute, the state's clock), and for a plan that waits, where it would be reserved."""

    plan: Plan
    start: float
    finish: float
    reserve: Plan | None = None

    @property
    def now(self) -> bool:
        return self.plan.status == "placeable"


@dataclass(frozen=True)
class FinishChoice:
    """The option chosen by expected finish, the others as they were weighed, and the time they
    count from; ``plan`` is the chosen plan with a ``why`` that says so."""

    chosen: Outlook
    others: tuple[Outlook, ...]
    now: float

    @property
    def holds_out(self) -> bool:
        """It waits for a busy type while another could start it now."""
        return not self.chosen.now and any(other.now for other in self.others)

    @property
    def plan(self) -> Plan:
        why = "; ".join(part for part in (self.chosen.plan.why, self.text()) if part)
        return replace(self.chosen.plan, why=why)

    def text(self) -> str:
        """``by expected finish: H100:1 ends in 14m (starts in 4m, runs 10m); V100:1 would end
        in 30m (starts now)``."""
        chosen = self.chosen
        text = (f"by expected finish: {chosen.plan.accelerator} ends in {self.from_now(chosen.finish)} "
                f"({self._times(chosen)})")
        if self.others:
            text += "; " + ", ".join(f"{other.plan.accelerator} would end in {self.from_now(other.finish)} "
                                     f"({self._times(other)})" for other in self.others)
        tied = [other for other in self.others if _rank(other)[:2] == _rank(chosen)[:2]]
        if tied:
            text += (f"; as soon as {', '.join(other.plan.accelerator for other in tied)}, at "
                     f"{hardware.price_text(chosen.plan.cost_per_hour)}, the lowest price")
        return text

    def _times(self, outlook: Outlook) -> str:
        start = "starts now" if outlook.start <= self.now + TIE_S else f"starts in {self.from_now(outlook.start)}"
        return f"{start}, runs {span(outlook.finish - outlook.start)}"

    def from_now(self, time: float) -> str:
        return span(time - self.now)


def span(seconds: float) -> str:
    """A duration as reasons word it: ``45s``, ``12m``, ``1.5h``."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def flexible(spec: JobSpec) -> bool:
    """Whether ``spec`` leaves the accelerator type to orch (``any_of``, ``GPU:N``, ``auto``);
    an ordered list is the user's order, kept."""
    choice = spec.resources.accelerator
    if not choice.ordered:
        return True
    (only, *more) = choice.options
    return not more and (only.kind == "auto" or (only.kind == "gpu" and only.type is None))


def pinned(spec: JobSpec, plan: Plan) -> JobSpec:
    """``spec`` with its accelerator fixed to ``plan``'s concrete option: where it would be
    reserved must be on that type, not on whichever the allocator's own rule prefers."""
    resources = spec.resources.model_copy(update={"accelerator": AcceleratorChoice(options=(plan.request,))})
    return spec.model_copy(update={"resources": resources})


class FinishChooser:
    """The expected-finish choices of one step. A placement key's options and their expected
    starts depend on the view alone, so they are kept until it changes; runtimes are each job's."""

    def __init__(self, books: Books, reservations: Reservations):
        self.books, self.reservations = books, reservations
        self.options: dict[tuple, tuple[ClusterSnapshot, list[tuple[Plan, float | None, Plan | None]]]] = {}

    def choose(self, job: QueuedJob, key: tuple) -> FinishChoice | None:
        """``job``'s option by expected finish; None where today's rules apply (module docstring)."""
        if not job.estimate_by_accelerator or not flexible(job.spec):
            return None
        options = self._options(job.spec, key)
        runtimes = [job.ends_within(plan) for plan, _, _ in options]
        if len(options) < 2 or None in runtimes or len(set(runtimes)) == 1:
            return None
        may_wait = self.reservations.left or not any(plan.status == "placeable" for plan, _, _ in options)
        weighed = [Outlook(plan, start, start + runtime, fit) for (plan, start, fit), runtime in zip(options, runtimes)
                   if start is not None and (may_wait or plan.status == "placeable")]
        if not weighed:
            return None
        best = min(weighed, key=_rank)
        others = tuple(other for other in weighed if other is not best)
        if best.plan.job != job.spec.name:  # kept from another job of the key
            best = replace(best, plan=replace(best.plan, job=job.spec.name))
        return FinishChoice(best, others, self.books.now)

    def _options(self, spec: JobSpec, key: tuple) -> list[tuple[Plan, float | None, Plan | None]]:
        """``spec``'s plan per type on the view, with its expected start and, for one that waits,
        where it would be reserved (start None: unknown)."""
        view = self.books.view
        kept = self.options.get(key)
        if kept is None or kept[0] is not view:
            kept = self.options[key] = (view, [self._start(spec, plan) for plan in allocator.alternatives(spec, view)])
        return kept[1]

    def _start(self, spec: JobSpec, plan: Plan) -> tuple[Plan, float | None, Plan | None]:
        if plan.status == "placeable":
            return plan, self.books.now, None
        soonest = self.reservations.soonest(pinned(spec, plan), plan)
        return (plan, None, None) if soonest is None else (plan, soonest[1], soonest[0])


def _rank(outlook: Outlook) -> tuple:
    """Earliest finish; then what starts now; then the lowest price (an unknown one last)."""
    price = outlook.plan.cost_per_hour
    return round(outlook.finish / TIE_S), not outlook.now, price is None, price or 0.0
