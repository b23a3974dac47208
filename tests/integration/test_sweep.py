"""Sweeps end to end: `orch submit --wait` of the torch sweep on the shared local cluster (4 trials
in `make test`, the 8 of the example in `make soak`).

The cluster has 2 CPUs and the example asks for 1 worker x 1 CPU per trial, so
`max_concurrent: auto` runs two trials at once; ASHA stops weak trials early.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import run_orch, tensorboard_scalars, wait_until_ended

pytestmark = pytest.mark.ray


def test_torch_sweep_lists_every_trial_with_its_tensorboard_run_and_curve(local_cluster):
    """The example sweep, smaller (4 trials of 3 epochs; Optuna and ASHA as written): `make soak`
    runs it whole, to 93 %."""
    results = _sweep("--set", "sweep.samples=4", "--set", "config.epochs=3")
    _check_trials(results, 4)


@pytest.mark.soak  # ~2 min; the smaller sweep above checks the same in `make test`
def test_torch_sweep_reaches_93_percent_and_lists_every_trial(local_cluster):
    results = _sweep()
    _check_trials(results, 8)
    assert results["metrics"]["test_accuracy"] >= 0.93


def _sweep(*sets: str) -> dict:
    pytest.importorskip("optuna")
    done = run_orch("submit", "jobs/digits/torch-sweep.yaml", "--wait", "--json", *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    view = json.loads(done.stdout)
    assert view["state"] == JobState.SUCCEEDED
    shown = run_orch("results", view["job"], "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _check_trials(results: dict, samples: int) -> None:
    trials = results["trials"]
    assert len({t["trial_id"] for t in trials}) == len(trials) == samples
    assert {t["state"] for t in trials} == {"TERMINATED"}
    for trial in trials:
        assert set(trial["config"]) == {"lr", "hidden", "dropout"}
        assert trial["accelerator"] == "CPU"
        assert trial["checkpoint"] and trial["duration_s"] > 0
    # The result is the best trial's last report, and its checkpoint is on disk.
    best = max(t["metrics"]["test_accuracy"] for t in trials)
    assert results["metrics"]["test_accuracy"] == best
    assert results["best_trial"]["metrics"]["test_accuracy"] == best
    assert set(results["best_trial"]["config"]) == {"lr", "hidden", "dropout"}
    assert Path(results["checkpoint"], "model.pt").exists()
    # One TensorBoard run per trial, every metric at each epoch its Train run reported; the
    # curve is the best trial's.
    runs = tensorboard_scalars(results["tensorboard"])
    assert sorted(runs) == sorted(t["trial_id"] for t in trials)
    for trial in trials:
        scalars, values = runs[trial["trial_id"]], trial["curve"]["values"]
        assert values and values[-1] == trial["metrics"]["test_accuracy"]
        for tag in ("epoch", "train_loss", "test_loss", "test_accuracy"):
            assert [step for step, _ in scalars[tag]] == list(range(len(scalars[tag]))), tag
        # ASHA may stop a trial while its Train run's next report (written already) waits for Tune.
        written = [value for _, value in scalars["test_accuracy"]]
        assert len(written) - len(values) in (0, 1), (written, values)
        assert written[:len(values)] == pytest.approx(values, rel=1e-6)
    assert results["curve"]["trial_id"] == results["best_trial"]["trial_id"]


def _events(local_cluster, submission_id: str) -> list[dict]:
    from orchestrator.adapters.jobs import JobsClient
    from orchestrator.core import events

    return events.parse(JobsClient(local_cluster).logs(submission_id))


@pytest.mark.soak  # ~90 s; `make soak` (tests/unit/test_control.py covers the requeue)
def test_killed_sweep_driver_resumes_without_rerunning_finished_trials(local_cluster):
    pytest.importorskip("optuna")
    done = run_orch("submit", "jobs/digits/torch-sweep.yaml", "--json", "--set", "name=sweep-kill",
                    "--set", "sweep.samples=4", "--set", "sweep.scheduler=fifo", "--set", "config.epochs=3")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)["job"]
    from orchestrator.adapters.jobs import JobsClient

    deadline = time.monotonic() + 300
    while not [e for e in _events(local_cluster, job) if e["event"] == "trial"]:
        assert time.monotonic() < deadline, "no trial finished"
        time.sleep(1)
    os.kill(int(JobsClient(local_cluster).get(job)["driver_info"]["pid"]), signal.SIGKILL)
    finished = {e["trial_id"] for e in _events(local_cluster, job) if e["event"] == "trial"}

    view = wait_until_ended(job)
    assert view["state"] == JobState.SUCCEEDED and view["attempt"] == 2
    assert any(h["reason"] and h["reason"].startswith("driver lost") for h in view["history"])
    resumed = _events(local_cluster, f"{job}-attempt2")
    assert not {e.get("trial_id") for e in resumed if e["event"] in ("report", "trial")} & finished
    trials = json.loads(run_orch("results", job, "--json").stdout)["trials"]
    assert len(trials) == 4 and {t["state"] for t in trials} == {"TERMINATED"}
