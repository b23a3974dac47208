"""Sweeps end to end: `orch submit --wait` of the 8-trial torch sweep on the shared local cluster.

The cluster has 2 CPUs and the example asks for 1 worker x 1 CPU per trial, so
`max_concurrent: auto` runs two trials at once; ASHA stops weak trials early.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_orch

pytestmark = pytest.mark.ray


def test_torch_sweep_reaches_93_percent_and_lists_every_trial(local_cluster):
    pytest.importorskip("optuna")
    done = run_orch("submit", "jobs/digits/torch-sweep.yaml", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    view = json.loads(done.stdout)
    assert view["state"] == "SUCCEEDED"

    shown = run_orch("results", view["job"], "--json")
    assert shown.returncode == 0, shown.stderr
    results = json.loads(shown.stdout)
    trials = results["trials"]
    assert len({t["trial_id"] for t in trials}) == len(trials) == 8
    assert {t["state"] for t in trials} == {"TERMINATED"}
    for trial in trials:
        assert set(trial["config"]) == {"lr", "hidden", "dropout"}
        assert trial["accelerator"] == "CPU"
        assert trial["checkpoint"] and trial["duration_s"] > 0
    # The result is the best trial's last report, and its checkpoint is on disk.
    best = max(t["metrics"]["test_accuracy"] for t in trials)
    assert results["metrics"]["test_accuracy"] == best >= 0.93
    assert Path(results["checkpoint"], "model.pt").exists()
