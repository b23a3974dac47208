"""The workflow after training: survive a killed worker, fine-tune from a job, predict from it.

All on the session's local cluster, through the `orch` CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, run_orch, wait_until_ended

pytestmark = pytest.mark.ray
DIGITS = REPO / "jobs" / "digits"


def _submit(spec: str | Path, *sets: str, wait: bool = True) -> dict:
    args = [a for s in sets for a in ("--set", s)]
    done = run_orch("submit", str(spec), "--json", *(["--wait"] if wait else []), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _results(job: str) -> dict:
    done = run_orch("results", job, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _train_workers(local_cluster, job: str) -> list[dict]:
    from orchestrator.adapters.http import http
    from orchestrator.adapters.jobs import JobsClient

    ray_job_id = JobsClient(local_cluster).get(job)["job_id"]
    query = ("/api/v0/actors?detail=1&limit=1000&filter_keys=class_name&filter_predicates=%3D"
             "&filter_values=RayTrainWorker")
    actors = http(local_cluster.dashboard_url, query)["data"]["result"]["result"]
    return [a for a in actors if a["state"] == "ALIVE" and a["job_id"] == ray_job_id]


@pytest.mark.soak  # ~70 s; `make soak`
def test_killed_worker_resumes_from_the_last_checkpoint(local_cluster):
    job = _submit("jobs/digits/torch-mlp.yaml", "name=worker-kill", "failure.max_failures=1",
                  "config.epochs=10", wait=False)["job"]
    deadline = time.monotonic() + 300
    while not (_results(job)["history"] and _results(job)["history"][-1]["epoch"] >= 2):
        assert time.monotonic() < deadline, "training did not get going"
        time.sleep(1)
    while not (workers := _train_workers(local_cluster, job)):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    os.kill(int(workers[0]["pid"]), signal.SIGKILL)

    view = wait_until_ended(job)
    assert view["state"] == JobState.SUCCEEDED and view["restarts"] == 1
    epochs = [m["epoch"] for m in _results(job)["history"]]
    # Resumed at the last checkpoint: every epoch reported, at most one of them twice (a restart
    # from epoch 0 would repeat them all).
    assert sorted(set(epochs)) == list(range(10)) and len(epochs) <= 11


def test_finetune_starts_from_pretrained_weights_and_predict_matches(local_cluster, tmp_path):
    pretrain = _submit(DIGITS / "pretrain.yaml")
    assert pretrain["state"] == JobState.SUCCEEDED
    finetune = _submit(DIGITS / "finetune.yaml", f"init_from=job:{pretrain['job']}")
    fresh = _submit(DIGITS / "finetune.yaml", "name=digits-fresh", "init_from=null", "config.epochs=1")  # same recipe
    tuned, scratch = _results(finetune["job"]), _results(fresh["job"])
    assert tuned["metrics"]["test_accuracy"] >= 0.90
    # The pretrained features carry over: after the head's warm-up epoch the fine-tuned model is
    # far ahead of the same recipe on a fresh model (measured here: about half its loss).
    assert tuned["history"][0]["test_loss"] < 0.65 * scratch["history"][0]["test_loss"]

    # Predict with the fine-tuned model on the 5-9 test rows it was evaluated on.
    work = tmp_path / "digits"
    shutil.copytree(DIGITS, work, ignore=shutil.ignore_patterns("__pycache__"))
    with np.load(DIGITS / "data" / "test.npz") as data:
        keep = data["y"] >= 5
        np.savez(work / "data" / "test59.npz", x=data["x"][keep], y=data["y"][keep])
    predicted = _submit(DIGITS / "predict.yaml", f"working_dir={work}", f"predict.model=job:{finetune['job']}",
                        "predict.input=data/test59.npz", "config.model=cnn")
    assert predicted["state"] == JobState.SUCCEEDED
    shown = _results(predicted["job"])
    with np.load(shown["output"]) as out:
        assert len(out["prediction"]) == int(keep.sum()) == shown["metrics"]["rows"]
        accuracy = float((out["prediction"] == out["y"]).mean())
    best = max(c["metrics"]["test_accuracy"] for c in tuned["best_checkpoints"])
    assert abs(accuracy - best) <= 1 / keep.sum()
    assert shown["metrics"]["rows_per_s"] > 0


@pytest.mark.soak  # ~70 s; the sweep's driver-kill test covers restarts in `make test`
def test_killed_driver_resumes_past_a_half_written_checkpoint(local_cluster):
    from orchestrator.adapters.jobs import JobsClient

    job = _submit("jobs/digits/torch-mlp.yaml", "name=driver-kill", "config.epochs=8", wait=False)["job"]
    deadline = time.monotonic() + 300
    while not (_results(job)["history"] and _results(job)["history"][-1]["epoch"] >= 2):
        assert time.monotonic() < deadline, "training did not get going"
        time.sleep(1)
    os.kill(int(JobsClient(local_cluster).get(job)["driver_info"]["pid"]), signal.SIGKILL)
    # As if the kill landed mid-write: a newer checkpoint folder with a torn file.
    torn = Path(local_cluster.storage, job, "checkpoint_2099-01-01_00-00-00.000000")
    torn.mkdir(parents=True)
    (torn / "model.pt").write_bytes(b"PK\x03\x04 torn")
    before = [m["epoch"] for m in _results(job)["history"]]

    view = wait_until_ended(job)
    assert view["state"] == JobState.SUCCEEDED and view["attempt"] == 2, view["reason"]
    history = _results(job)["history"]
    resumed = [m["epoch"] for m in history if m["attempt"] == 2]
    assert resumed[0] in (before[-1], before[-1] + 1) and resumed[-1] == 7
