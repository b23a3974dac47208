"""Runtime estimates from history on the local cluster (issue 20): after the digits example
ran twice, `orch plan` of it says `basis: history` with a runtime near the second run's."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import REPO, run_orch

pytestmark = pytest.mark.ray
SPEC = str(REPO / "jobs" / "digits" / "torch-mlp.yaml")
# Two epochs, not the example's 12, keep the test short; a run still lasts over 20 s (15 of them
# Ray Train's start-up, which running time counts as the job holds its resources through it).
SETS = ("--set", "name=digits-estimated", "--set", "config.epochs=2")


def _running_s(view: dict) -> float:
    """The run's running time as its history shows it: RUNNING until it ended."""
    at = {h["state"]: h["at"] for h in view["history"]}
    return at["SUCCEEDED"] - at["RUNNING"]


def test_plan_estimates_from_the_last_runs_of_the_same_job(local_cluster):
    ran = []
    for _ in range(2):
        done = run_orch("submit", SPEC, "--wait", "--json", *SETS, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        view = json.loads(done.stdout)
        assert view["state"] == "SUCCEEDED", view
        ran.append(_running_s(view))
    assert ran[-1] >= 15, f"runs too short to compare: {ran}"

    planned = run_orch("plan", SPEC, "--json", *SETS)
    assert planned.returncode == 0, planned.stderr
    estimate = json.loads(planned.stdout)["estimate"]
    assert estimate["basis"] == "history: 2 runs on CPU x2", estimate
    # On a loaded machine (2 cores shared) a run's start-up alone can vary by half: the load says so.
    assert abs(estimate["runtime_s"] - ran[-1]) <= 0.3 * ran[-1], (estimate, ran, os.getloadavg())
    assert json.loads(planned.stdout)["estimate"]["start_in_s"] == 0.0  # nothing holds the cluster

    # A third run queued behind a running one: `orch list` shows when it is expected to start.
    first = json.loads(run_orch("submit", SPEC, "--json", *SETS).stdout)["job"]
    third = json.loads(run_orch("submit", SPEC, "--json", *SETS).stdout)["job"]  # 2 CPUs: it waits
    try:
        listed = _until_eta(third)
        row = {r["job"]: r for r in listed}[third]
        assert row["state"] == "QUEUED" and row["estimate"]["basis"] == "history: 2 runs on CPU x2", row
        table = run_orch("list")
        assert "starts in" in table.stdout or "starts now" in table.stdout, table.stdout
    finally:  # the queued one first, or the control plane would start it when the first ends
        assert run_orch("cancel", third, first).returncode == 0
        _until_stopped_in_ray(local_cluster, first)


def _until_eta(job: str, timeout_s: float = 60) -> list[dict]:
    """`orch list --json` once ``job`` has an expected start (the forecast runs every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = run_orch("list", "--json")
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        found = {r["job"]: r for r in rows}[job]["estimate"]
        if found["start_in_s"] is not None or time.monotonic() > deadline:
            assert found["start_in_s"] is not None, (found, os.getloadavg())
            return rows
        time.sleep(1)


def _until_stopped_in_ray(info, job: str, timeout_s: float = 60) -> None:
    """Ray stops a cancelled job's driver a little after orch says CANCELLED: the suite's leak
    check must not find it running."""
    from orchestrator.adapters.jobs import ENDED_IN_RAY, JobsClient

    deadline = time.monotonic() + timeout_s
    while any(j["status"] not in ENDED_IN_RAY for j in JobsClient(info).list() if j["submission_id"].startswith(job)):
        assert time.monotonic() < deadline, f"Ray still runs {job} {timeout_s:.0f} s after its cancel"
        time.sleep(1)
