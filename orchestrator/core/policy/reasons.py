"""Why a job waits for the cluster, in words: the edge where the policy's findings become text."""

from __future__ import annotations

from typing import Iterable, Mapping

from orchestrator.core import hardware
from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.placement import quantity
from orchestrator.core.policy.state import RunningJob
from orchestrator.core.snapshot import ClusterSnapshot


def waits_for(result: Plan | Infeasible, free: ClusterSnapshot, running: Iterable[RunningJob]) -> str:
    """Why a job does not fit now: "waits for 2 x A100: 0 free, 4 held by jobs x, y"."""
    if isinstance(result, Infeasible):
        return "cannot run on this cluster: " + "; ".join(result.reasons)
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
    """The resource a job is scarce on: GPU or TPU when it has devices, else CPU."""
    return next((k for k in (hardware.GPU, hardware.TPU) if per_worker.get(k)), hardware.CPU)


def named(ids: list[str], noun: str, shown: int = 3) -> str:
    if not ids:
        return ""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    word = noun if len(ids) > 1 else noun.removesuffix("s")
    return f"{word} {', '.join(ids[:shown])}{more}"


def amount_text(resource: str, value: float) -> str:
    return quantity(resource, value, short=True)
