"""The reconcile rules as a table: Ray's record of an attempt -> the job's transitions."""

from __future__ import annotations

import pytest

from orchestrator.control.reconcile import Attempt, Move, moves
from orchestrator.core.lifecycle import JobState

NOW = 50.0
ENV = {"error_type": "RUNTIME_ENV_SETUP_FAILURE", "driver_exit_code": None,
       "message": "runtime_env setup failed\nTraceback ...\nOSError: Failed to download gcs://_ray_pkg_x.zip"}
CODE_REQUEUE = "Ray could not set up its code (launch 1 of 3: OSError: Failed to download gcs://_ray_pkg_x.zip)"


def _job(state=JobState.RUNNING, history=(), preempt=False, max_failures=2, code_kept=True, reason=None) -> Attempt:
    return Attempt(state, reason, list(history), preempt, max_failures, code_kept)


@pytest.mark.parametrize("job, info, found, expected", [
    (_job(JobState.STARTING), {"status": "RUNNING"}, [], [Move(JobState.RUNNING, None, {"started_at": NOW})]),
    (_job(JobState.RUNNING), {"status": "RUNNING"}, [], []),
    (_job(), {"status": "SUCCEEDED"}, [], [Move(JobState.SUCCEEDED, None, {"ended_at": NOW})]),
    (_job(preempt=True, reason="preempted by high"), {"status": "STOPPED"}, [],
     [Move(JobState.PREEMPTED, "preempted by high", {"preempt_requested_at": None}),
      Move(JobState.QUEUED, "preempted; resumes from its last checkpoint")]),
    (_job(), {"status": "STOPPED"}, [], [Move(JobState.CANCELLED, "stopped through Ray", {"ended_at": NOW})]),
    (_job(JobState.CANCELLED), {"status": "STOPPED"}, [], []),
    (_job(), {"status": "FAILED", "driver_exit_code": 137}, [],
     [Move(JobState.QUEUED, "driver lost (exit code 137); resumes from its last checkpoint")]),
    (_job(history=[{"reason": "driver lost (exit code 137)"}] * 2), {"status": "FAILED", "driver_exit_code": 137,
                                                                     "message": "killed"}, [],
     [Move(JobState.FAILED, "killed", {"ended_at": NOW})]),
    (_job(), {"status": "FAILED", "driver_exit_code": 1}, [{"event": "failed", "error": "ValueError: bad lr"}],
     [Move(JobState.FAILED, "ValueError: bad lr", {"ended_at": NOW})]),
])
def test_rays_record_of_an_attempt_becomes_transitions(job, info, found, expected):
    assert moves(job, info, found, NOW) == expected


def test_an_attempt_whose_code_ray_could_not_set_up_is_requeued_then_failed():
    requeue = moves(_job(JobState.STARTING), {"status": "FAILED", **ENV}, [], NOW)
    assert requeue == [Move(JobState.QUEUED, f"{CODE_REQUEUE}; orch puts its package back and relaunches it")]
    tried = [{"reason": "Ray could not set up its code (launch 1 of 3: ...)"}] * 2
    [failed] = moves(_job(JobState.STARTING, history=tried), {"status": "FAILED", **ENV}, [], NOW)
    assert failed.state == JobState.FAILED
    assert failed.reason.startswith("Ray could not set up the job's runtime env in 3")
    [lost] = moves(_job(JobState.STARTING, code_kept=False), {"status": "FAILED", **ENV}, [], NOW)
    assert lost.state == JobState.FAILED and "orch keeps no copy of its code; submit it again" in lost.reason
