"""Why a job waits, as data: one frozen dataclass per kind of reason, each rendered to the text
users see by ``text()`` (the edge: ``decide`` renders them only when asked to explain)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from orchestrator.core import hardware
from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.placement import quantity
from orchestrator.core.policy.finish import FinishChoice
from orchestrator.core.policy.state import RunningJob
from orchestrator.core.snapshot import EPS, ClusterSnapshot


@dataclass(frozen=True)
class CannotRun:
    """The job fits no node of this cluster, whatever runs."""

    reasons: tuple[str, ...]

    def text(self) -> str:
        return "cannot run on this cluster: " + "; ".join(self.reasons)


@dataclass(frozen=True)
class WaitsForResources:
    """The job fits the cluster, not its free resources (``free``; ``running`` hold the rest);
    ``reserved``: the nodes reserved for it meanwhile."""

    plan: Plan
    free: ClusterSnapshot
    running: Iterable[RunningJob]
    reserved: tuple[str, ...] = ()

    def text(self) -> str:
        kept = f"; {', '.join(self.reserved)} reserved for it" if self.reserved else ""
        return waits_for(self.plan, self.free, self.running) + kept

    def with_reserved(self, nodes: Iterable[str]) -> WaitsForResources:
        return replace(self, reserved=tuple(sorted(set(nodes))))


@dataclass(frozen=True)
class OverQuota:
    """The job's ``amount`` of ``resource`` exceeds what its queue may hold more now (``room``)."""

    queue: str
    resource: str
    amount: float
    room: float
    held: float
    quota: float
    borrow: float | None
    cohort: str | None

    def text(self) -> str:
        resource, held, quota = self.resource, self.held, self.quota
        have, limit = amount_text(resource, held), amount_text(resource, quota)
        if held + EPS < quota:
            text = (f"queue {self.queue} would exceed its quota ({resource} {have} held + "
                    f"{amount_text(resource, self.amount)} needed > {limit})")
        else:
            borrowed = f", {amount_text(resource, held - quota)} borrowed" if held > quota + EPS else ""
            text = f"queue {self.queue} is at its quota ({resource} {have} of {limit}{borrowed})"
        if self.borrow:
            text += (f"; borrowing from cohort {self.cohort} (up to {amount_text(resource, self.borrow)}) "
                     f"it may hold {amount_text(resource, max(self.room, 0.0))} more now")
        return text


@dataclass(frozen=True)
class BehindQuota:
    """An earlier job of the queue waits for the queue's quota of ``resource``."""

    first: str
    queue: str
    resource: str

    def text(self) -> str:
        return f"behind {self.first} in queue {self.queue}, which waits for the queue's {self.resource} quota"


@dataclass(frozen=True)
class NoBorrowWhilePreempting:
    queue: str
    preempting: str

    def text(self) -> str:
        return f"queue {self.queue} does not borrow while {self.preempting} preempts to start"


@dataclass(frozen=True)
class CpusKept:
    """CPU work whose free CPUs are on accelerator nodes, kept for jobs that want their devices."""

    nodes: tuple[str, ...]

    def text(self) -> str:
        return f"waits for CPUs: the free ones are on {', '.join(self.nodes)}, kept for jobs waiting for its devices"


@dataclass(frozen=True)
class BehindReservation:
    """The job fits the free resources, but ``nodes`` are reserved for ``first`` (ahead of it)."""

    first: str
    higher: bool  # first has a higher priority (else it was queued earlier at the same)
    nodes: tuple[str, ...]

    def text(self) -> str:
        who = f"higher-priority job {self.first}" if self.higher else f"{self.first}, queued earlier at the same priority"
        return f"behind {who}: it fits the free resources, but {', '.join(self.nodes)} are reserved for jobs ahead"


@dataclass(frozen=True)
class Preempting:
    victims: tuple[str, ...]

    def text(self) -> str:
        return f"preempting {', '.join(self.victims)} to start"


@dataclass(frozen=True)
class WaitsForStopping:
    """The job fits once the jobs asked to stop (``freed``) have stopped."""

    freed: tuple[str, ...]

    def text(self) -> str:
        return f"waits for preempted {named(list(self.freed), 'jobs')} to stop"


@dataclass(frozen=True)
class HoldsOut:
    """The job could start now on a slower type, but is expected to finish sooner on a busy
    faster one it holds a reservation on (core/policy/finish.py)."""

    choice: FinishChoice
    reserved: tuple[str, ...]

    def text(self) -> str:
        chosen = self.choice.chosen
        return (f"holds out for {chosen.plan.accelerator}, expected to start in {self.choice.from_now(chosen.start)} "
                f"on {', '.join(self.reserved)} (reserved for it): {self.choice.text()}")


@dataclass(frozen=True)
class BehindInGroup:
    """An earlier job of the same queue, priority and resources waits: this one waits with it."""

    first: str
    fifo: bool = False

    def text(self) -> str:
        if self.fifo:
            return f"behind {self.first} (fifo: the first job in the queue blocks all behind it)"
        return f"behind {self.first} (same queue, priority and resources)"


Reason = (CannotRun | WaitsForResources | OverQuota | BehindQuota | NoBorrowWhilePreempting | CpusKept
          | BehindReservation | Preempting | WaitsForStopping | HoldsOut | BehindInGroup)


def why_not(result: Plan | Infeasible, free: ClusterSnapshot, running: Iterable[RunningJob]) -> Reason:
    """Why a job with this plan does not start on ``free``."""
    if isinstance(result, Infeasible):
        return CannotRun(tuple(result.reasons))
    return WaitsForResources(result, free, running)


def waits_for(result: Plan | Infeasible, free: ClusterSnapshot, running: Iterable[RunningJob]) -> str:
    """Why a job does not fit now: "waits for 2 x A100: 0 free, 4 held by jobs x, y"."""
    if isinstance(result, Infeasible):
        return CannotRun(tuple(result.reasons)).text()
    kind = device_kind(result.per_worker)
    need = result.per_worker.get(kind, 0.0) * result.workers
    request = result.request
    if request.kind == "slice":
        what = result.accelerator
    elif kind == hardware.CPU:
        what = quantity(kind, need)
    else:
        what = f"{need:g} x {request.type.name if request.type else kind}"
    index = free.index
    classes = {index.class_of[index.position[name]] for name in result.nodes}
    names = {free.nodes[p].name for c in classes for p in index.classes[c].members}
    have = sum(free.node(n).free.get(kind, 0.0) for n in names)
    held = sum(free.node(n).total.get(kind, 0.0) for n in names) - have
    holders = sorted(job.id for job in running if any(n in names and d.get(kind) for n, d in job.demand.items()))
    return f"waits for {what}: {have:g} free, {held:g} held by {named(holders, 'jobs') or 'other work'}"


def device_kind(per_worker: Mapping[str, float]) -> str:
    """The resource a job is scarce on: its devices' (GPU, TPU, neuron_cores...) when it has some, else CPU."""
    return next((k for k in hardware.DEVICE_RESOURCES if per_worker.get(k)), hardware.CPU)


def named(ids: list[str], noun: str, shown: int = 3) -> str:
    if not ids:
        return ""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    word = noun if len(ids) > 1 else noun.removesuffix("s")
    return f"{word} {', '.join(ids[:shown])}{more}"


def amount_text(resource: str, value: float) -> str:
    return quantity(resource, value, short=True)
