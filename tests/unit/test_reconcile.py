"""The reconcile rules as a table: Ray's record of an attempt -> the job's transitions."""

from __future__ import annotations

import pytest

from orchestrator.control.reconcile import Attempt, Move, moves

NOW = 50.0
ENV = {"error_type": "RUNTIME_ENV_SETUP_FAILURE", "driver_exit_code": None,
       "message": "runtime_env setup failed\nTraceback ...\nOSError: Failed to download gcs://_ray_pkg_x.zip"}
CODE_REQUEUE = "Ray could not set up its code (launch 1 of 3: OSError: Failed to download gcs://_ray_pkg_x.zip)"


def _job(state="RUNNING", history=(), preempt=False, max_failures=2, code_kept=True, reason=None) -> Attempt:
    return Attempt(state, reason, list(history), preempt, max_failures, code_kept)


@pytest.mark.parametrize("job, info, found, expected", [
    (_job("STARTING"), {"status": "RUNNING"}, [], [Move("RUNNING", None, {"started_at": NOW})]),
    (_job("RUNNING"), {"status": "RUNNING"}, [], []),
    (_job(), {"status": "SUCCEEDED"}, [], [Move("SUCCEEDED", None, {"ended_at": NOW})]),
    (_job(preempt=True, reason="preempted by high"), {"status": "STOPPED"}, [],
     [Move("PREEMPTED", "preempted by high", {"preempt_requested_at": None}),
      Move("QUEUED", "preempted; resumes from its last checkpoint")]),
    (_job(), {"status": "STOPPED"}, [], [Move("CANCELLED", "stopped through Ray", {"ended_at": NOW})]),
    (_job("CANCELLED"), {"status": "STOPPED"}, [], []),
    (_job(), {"status": "FAILED", "driver_exit_code": 137}, [],
     [Move("QUEUED", "driver lost (exit code 137); resumes from its last checkpoint")]),
    (_job(history=[{"reason": "driver lost (exit code 137)"}] * 2), {"status": "FAILED", "driver_exit_code": 137,
                                                                     "message": "killed"}, [],
     [Move("FAILED", "killed", {"ended_at": NOW})]),
    (_job(), {"status": "FAILED", "driver_exit_code": 1}, [{"event": "failed", "error": "ValueError: bad lr"}],
     [Move("FAILED", "ValueError: bad lr", {"ended_at": NOW})]),
])
def test_rays_record_of_an_attempt_becomes_transitions(job, info, found, expected):
    assert moves(job, info, found, NOW) == expected


def test_an_attempt_whose_code_ray_could_not_set_up_is_requeued_then_failed():
    requeue = moves(_job("STARTING"), {"status": "FAILED", **ENV}, [], NOW)
    assert requeue == [Move("QUEUED", f"{CODE_REQUEUE}; orch puts its package back and relaunches it")]
    tried = [{"reason": "Ray could not set up its code (launch 1 of 3: ...)"}] * 2
    [failed] = moves(_job("STARTING", history=tried), {"status": "FAILED", **ENV}, [], NOW)
    assert failed.state == "FAILED" and failed.reason.startswith("Ray could not set up the job's runtime env in 3")
    [lost] = moves(_job("STARTING", code_kept=False), {"status": "FAILED", **ENV}, [], NOW)
    assert lost.state == "FAILED" and "orch keeps no copy of its code; submit it again" in lost.reason
