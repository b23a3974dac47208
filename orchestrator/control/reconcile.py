"""What an attempt's record in Ray means for its orch job: transitions as data.

PURE: the control plane reads Ray's record of the attempt (status, exit code,
error type, message) and the events its log carried, and asks `moves` what
to do; it then writes the moves to the store (masking their reasons) in order.
Tests call `moves` with hand-made records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.adapters.jobs import RayStatus
from orchestrator.core import events
from orchestrator.core.forms import Duration
from orchestrator.core.lifecycle import (CODE_NOT_SET_UP, DRIVER_LOST, JobState, driver_losses, requeues,
                                         running_s)
from orchestrator.core.protocol import TEMPFAIL

RAY_TO_STATE = {RayStatus.PENDING: JobState.STARTING, RayStatus.RUNNING: JobState.RUNNING,
                RayStatus.SUCCEEDED: JobState.SUCCEEDED, RayStatus.FAILED: JobState.FAILED}
RUNTIME_ENV_FAILED = "RUNTIME_ENV_SETUP_FAILURE"  # Ray's error_type: the attempt never ran its driver
CODE_SETUP_TRIES = 3  # launches of a job whose runtime env Ray could not set up, its package put back each time


@dataclass(frozen=True)
class Move:
    """One transition of the job: its new state, the reason, and the fields that change with it."""

    state: JobState
    reason: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """What the rules read of the job whose attempt Ray reports."""

    state: JobState
    reason: str | None
    history: list[dict]
    preempt_requested: bool
    max_failures: int  # failure.max_failures; -1 = unlimited
    code_kept: bool  # orch holds the job's code package and can put it back into Ray
    time_limit: Duration | None = None  # schedule.time_limit


def limit_reached(history: list[dict], now: float, limit: Duration | None) -> bool:
    """Whether a job has run for its whole time limit: its RUNNING time summed over attempts."""
    return limit is not None and running_s(history, now) >= limit.seconds


def limit_reason(limit: Duration) -> str:
    """The reason of a job ended by its time limit, with the limit as the spec wrote it."""
    return f"time limit {limit} reached"


def moves(job: Attempt, info: dict, found: list[dict], now: float) -> list[Move]:
    """The transitions Ray's record ``info`` of the job's attempt calls for (none: nothing new);
    ``found``: the events of the attempt's log once it ended."""
    status = RayStatus(info["status"])
    limit = job.time_limit
    ended_by_limit = status in (RayStatus.STOPPED, RayStatus.FAILED) and limit_reached(job.history, now, limit)
    if status is RayStatus.STOPPED:
        if job.preempt_requested and ended_by_limit:  # orch stopped it at its limit: never requeued
            return [Move(JobState.FAILED, limit_reason(limit), {"ended_at": now, "preempt_requested_at": None})]
        if job.preempt_requested:
            return [Move(JobState.PREEMPTED, job.reason, {"preempt_requested_at": None}),
                    Move(JobState.QUEUED, "preempted; resumes from its last checkpoint")]
        if job.state == JobState.CANCELLED:
            return []
        return [Move(JobState.CANCELLED, "stopped through Ray", {"ended_at": now})]
    state = RAY_TO_STATE[status]
    if state == job.state:
        return []
    if state is JobState.RUNNING:
        return [Move(JobState.RUNNING, None, {"started_at": now})]
    if state is JobState.FAILED:
        requeue = _code_not_set_up(job, info) if info.get("error_type") == RUNTIME_ENV_FAILED \
            else _driver_lost(job, info, found)
        if requeue and ended_by_limit:  # a retry would only be stopped again at once
            return [Move(JobState.FAILED, limit_reason(limit), {"ended_at": now})]
        if requeue:
            return [Move(JobState.QUEUED, requeue)]
        return [Move(JobState.FAILED, _failure_reason(job, info, found), {"ended_at": now})]
    return [Move(state, None, {"ended_at": now} if state is JobState.SUCCEEDED else {})]


def _driver_lost(job: Attempt, info: dict, found: list[dict]) -> str | None:
    """The requeue reason of a job whose driver was killed (signal, OOM, lost node) or lost a Ray
    process it needs (exit TEMPFAIL) while it ran, within ``failure.max_failures``; None when
    it is not retried. The next attempt resumes from storage: Train from its last checkpoint,
    a sweep from its experiment state. A loop that failed on its own (its driver says so) is not."""
    code = info.get("driver_exit_code")
    killed = code is None or code < 0 or code >= 128 or code == TEMPFAIL
    if not killed or events.last(found, "failed"):
        return None
    if job.max_failures != -1 and driver_losses(job.history) >= job.max_failures:
        return None
    detail = f"exit code {code}" if code is not None else (info.get("message") or "no exit code").strip()
    return f"{DRIVER_LOST} ({detail}); resumes from its last checkpoint"


def _code_not_set_up(job: Attempt, info: dict) -> str | None:
    """The requeue reason of a job whose attempt never ran because Ray could not set up its
    runtime env (its code package gone from the GCS, ...): not the user's doing, so no restart
    is counted, and the next launch puts the kept package back anew. None after
    CODE_SETUP_TRIES such launches, or with no kept package to put back."""
    tries = requeues(job.history, CODE_NOT_SET_UP) + 1
    if not job.code_kept or tries >= CODE_SETUP_TRIES:
        return None
    return (f"{CODE_NOT_SET_UP} (launch {tries} of {CODE_SETUP_TRIES}: {last_line(info)}); "
            "orch puts its package back and relaunches it")


def _failure_reason(job: Attempt, info: dict, found: list[dict]) -> str | None:
    failed = events.last(found, "failed")
    if failed:
        return failed["error"]
    line = last_line(info)
    if info.get("error_type") != RUNTIME_ENV_FAILED:
        return line
    if job.code_kept:
        return (f"Ray could not set up the job's runtime env in {CODE_SETUP_TRIES} launches; orch put its "
                f"code package back into Ray before each: {line}")
    return f"Ray could not set up the job's runtime env and orch keeps no copy of its code; submit it again: {line}"


def last_line(info: dict) -> str | None:
    """The last line of Ray's message about a job (its error, after any traceback)."""
    lines = [line for line in (info.get("message") or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else None
