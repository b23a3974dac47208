"""A sweep's trial slots: the further copies of its plan that fit what is left, within its quota."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

from orchestrator.core import allocator
from orchestrator.core.allocator import Plan
from orchestrator.core.policy.quota import plan_totals, totals
from orchestrator.core.policy.state import placeable
from orchestrator.core.snapshot import EPS, ClusterSnapshot, QueueConfig
from orchestrator.core.spec import JobSpec


# Trial slots one sweep holds at most: each travels to its driver in the job's payload, an env
# variable (Linux caps one at 128 KiB), at about 200 bytes a slot whatever its workers.
MAX_TRIAL_SLOTS = 256


def with_trials(spec: JobSpec, plan: Plan, left: ClusterSnapshot, usage: Mapping[str, float],
                queue: QueueConfig | None, place: Callable[[ClusterSnapshot], Plan | None] | None = None) -> Plan:
    """Sweep ``spec``'s admitted ``plan`` with the further trial slots that fit ``left`` (the free
    resources once ``plan`` is placed) at once: up to ``max_concurrent`` trials (``auto``: all of
    them), as far as the queue's own quota goes beyond its ``usage`` and ``plan`` in the resources
    a slot takes; a slot is only worth taking where nobody reclaims it. ``place`` finds one slot
    on what is left (default: the allocator's plan, when placeable)."""
    sweep = spec.sweep
    wanted = sweep.trials if sweep.max_concurrent == "auto" else min(sweep.max_concurrent, sweep.trials)
    limit = min(wanted, MAX_TRIAL_SLOTS)
    place = place or (lambda free: placeable(allocator.plan(spec, free)))
    quota = (queue.quota or {}) if queue else {}
    held = totals([usage, plan_totals(plan)])
    trials: list[Plan] = []
    while 1 + len(trials) < limit and (slot := place(left)) is not None:
        need = plan_totals(slot)
        held = totals([held, need])
        if any(need[key] > EPS and held[key] > amount + EPS for key, amount in quota.items()):
            break
        trials.append(slot)
        left = left.allocate(slot.demand())
    return replace(plan, trials=tuple(trials)) if trials else plan
