"""A job's lifecycle: its states and the moves between them (SPEC.md section 4).

The only place job states are spelled; the store, the API and the renderers take them from here.
"""

from __future__ import annotations

from enum import Enum
from typing import Mapping

DRIVER_LOST = "driver lost"  # the reason's prefix on requeues after a killed driver
CODE_NOT_SET_UP = "Ray could not set up its code"  # the reason's prefix on relaunches after that


class JobState(str, Enum):
    """A job's lifecycle (SPEC.md section 4)."""

    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    PREEMPTED = "PREEMPTED"

    @property
    def is_terminal(self) -> bool:
        """No transition leaves this state."""
        return not TRANSITIONS[self]


_S = JobState
# STARTING may go straight to SUCCEEDED/FAILED (a job that ends before a poll sees
# it run) or to PREEMPTED (stopped for another job while its workers start).
# STARTING and RUNNING go back to QUEUED when the job's driver was lost (killed, its
# node gone) within ``failure.max_failures``: the next attempt resumes from storage.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    _S.QUEUED: frozenset({_S.STARTING, _S.CANCELLED, _S.FAILED}),
    _S.STARTING: frozenset({_S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.PREEMPTED, _S.QUEUED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.PREEMPTED, _S.QUEUED}),
    _S.PREEMPTED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def check_transition(old: str | JobState, new: str | JobState) -> JobState:
    """``new`` as a JobState when a job may move there from ``old``, else ValueError."""
    old, new = JobState(old), JobState(new)
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "nothing (it is final)"
        raise ValueError(f"a job cannot go from {old.value} to {new.value}; from {old.value} it may go to {allowed}")
    return new


TERMINAL = tuple(state.value for state in JobState if state.is_terminal)


def requeues(history: list[dict], prefix: str) -> int:
    """How often a job was requeued for the cause whose reasons start with ``prefix``."""
    return sum(1 for h in history if (h.get("reason") or "").startswith(prefix))


def driver_losses(history: list[dict]) -> int:
    """How often a job was requeued because its driver was lost (each one is a restart)."""
    return requeues(history, DRIVER_LOST)


def running_s(history: list[dict], now: float) -> float:
    """Seconds a job has spent RUNNING, summed over its attempts: each RUNNING entry of its
    history up to the entry after it (up to ``now`` while it runs)."""
    total, since = 0.0, None
    for entry in history:
        if since is not None:
            total += entry["at"] - since
        since = entry["at"] if entry["state"] == JobState.RUNNING.value else None
    return total + (now - since if since is not None else 0.0)
