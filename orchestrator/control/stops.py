"""Stopping running jobs: at their time limit, and once a stop's checkpoint came or its grace ran out.

A preemption and a time limit stop a job the same way: the control plane records when it
asked (``preempt_requested_at``), the job's loop reports its next checkpoint (examples report
one each epoch), and the job is stopped after that checkpoint or after the grace. What the
stop then means (requeued, or FAILED at its limit) is `reconcile.moves`' rule. The limit is
enforced here, not by the driver: a hung driver cannot be trusted to stop itself.
"""

from __future__ import annotations

from orchestrator.adapters.jobs import JobsClient
from orchestrator.control import reconcile
from orchestrator.control.store import JobRow, Store
from orchestrator.core import events


def ask_at_time_limits(store: Store, active: list[JobRow], now: float) -> None:
    """Ask each job that has run for its whole ``schedule.time_limit`` to stop (unless a stop is
    asked already: a preemption's stop ends it at its limit just the same)."""
    for row in active:
        if row.preempt_requested_at:
            continue
        limit = row.spec.schedule.time_limit
        if reconcile.limit_reached(row.history, now, limit):
            store.update(row.id, preempt_requested_at=now,
                         reason=f"{reconcile.limit_reason(limit)}: stopping after its next checkpoint")


def finish(active: list[JobRow], jobs: JobsClient, now: float, grace_s: float) -> None:
    """Stop the jobs asked to stop once they checkpointed after the request, or the grace ran out."""
    for row in active:
        if not row.preempt_requested_at:
            continue
        grace_over = now - row.preempt_requested_at >= grace_s
        if grace_over or _checkpointed_since(jobs, row, row.preempt_requested_at):
            jobs.stop(row.ray_submission_id)


def _checkpointed_since(jobs: JobsClient, row: JobRow, since: float) -> bool:
    found = events.parse(jobs.logs(row.ray_submission_id))
    return any(e.get("event") == "report" and e.get("checkpoint") and e.get("at", 0) >= since for e in found)
