"""A time limit on the local cluster: the control plane stops a job at its limit after a
checkpoint, and the job ends FAILED with the reason, unretried (issue 20)."""

from __future__ import annotations

import json

import pytest

from orchestrator.core import events
from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, run_orch

pytestmark = pytest.mark.ray
SPEC = REPO / "tests" / "data" / "resumable" / "job.yaml"  # loop.py: epochs of sleep_s, a checkpoint each
LIMIT_S = 20


def _at(view: dict, state: str) -> float:
    return next(h["at"] for h in view["history"] if h["state"] == state)


def test_a_job_past_its_time_limit_checkpoints_stops_and_fails(local_cluster):
    # A minute of epochs, limited to 20 s: `submit --wait` follows it and exits 1.
    done = run_orch("submit", str(SPEC), "--wait", "--json", "--set", "name=limited",
                    "--set", f"schedule.time_limit={LIMIT_S}s", "--set", "config.epochs=60",
                    "--set", "config.sleep_s=1.0", timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    view = json.loads(done.stdout)
    assert (view["state"], view["reason"]) == (JobState.FAILED, f"time limit {LIMIT_S}s reached"), view
    states = [h["state"] for h in view["history"]]
    assert JobState.PREEMPTED not in states and states.count(JobState.RUNNING) == 1 and view["attempt"] == 1

    started, ended = _at(view, JobState.RUNNING), _at(view, JobState.FAILED)
    assert LIMIT_S <= ended - started <= LIMIT_S + 10, states

    # It was stopped after a checkpoint reported once the limit was reached, not killed mid-epoch.
    log = run_orch("logs", view["job"])
    assert log.returncode == 0, log.stderr
    saved = [e["at"] for e in events.parse(log.stdout) if e.get("event") == "report" and e.get("checkpoint")]
    assert saved and started + LIMIT_S <= max(saved) <= ended
    epochs = json.loads(run_orch("results", view["job"], "--json").stdout)["history"]
    assert 1 <= max(m["epoch"] for m in epochs) < 59  # the workers' start-up counts as running time
