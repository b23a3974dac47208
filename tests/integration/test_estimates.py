"""Runtime estimates from history on the local cluster (issue 20): after the digits example
ran twice, `orch plan` of it says `basis: history` with a runtime near the second run's."""

from __future__ import annotations

import json
import os

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
