"""End to end: `orch submit --wait` in a subprocess against the shared local cluster."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import http_status, run_orch, tensorboard_scalars, tensorboard_served

pytestmark = pytest.mark.ray


def _submit_and_wait(spec: str, *overrides: str) -> dict:
    sets = [arg for item in overrides for arg in ("--set", item)]
    done = run_orch("submit", spec, "--wait", "--json", *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def _ray_job(local_cluster, job_id: str) -> dict:
    from orchestrator.adapters.jobs import JobsClient

    return JobsClient(local_cluster).get(job_id)


def test_torch_mlp_trains_to_90_percent_and_shows_in_ray(local_cluster):
    view = _submit_and_wait("jobs/digits/torch-mlp.yaml")
    assert view["state"] == JobState.SUCCEEDED
    assert view["metrics"]["test_accuracy"] >= 0.90
    info = _ray_job(local_cluster, view["job"])
    assert info["status"] == "SUCCEEDED"
    meta = info["metadata"]
    assert meta["orch_job"] == view["job"]
    assert meta["orch_name"] == "digits-mlp"
    assert meta["orch_framework"] == "torch"
    assert meta["orch_workers"] == "2"
    assert meta["orch_accelerator"] == "CPU"
    assert json.loads(meta["orch_plan"])["status"] == "placeable"

    results = run_orch("results", view["job"], "--json")
    assert results.returncode == 0, results.stderr
    data = json.loads(results.stdout)
    assert data["checkpoint"] and data["metrics"]["test_accuracy"] >= 0.90
    assert [m["epoch"] for m in data["history"]] == list(range(12))
    # checkpoint.keep: 2 with metric test_accuracy keeps the best two
    assert len(data["best_checkpoints"]) == 2
    _shows_its_curve_and_tensorboard(view["job"], data)


def _shows_its_curve_and_tensorboard(job: str, data: dict) -> None:
    """Every report's every metric is in the job's event files at its epoch, as TensorBoard
    reads them; `orch results` gives the checkpoint metric's series; `orch tensorboard` serves them."""
    reports = [{k: v for k, v in m.items() if k != "attempt"} for m in data["history"]]
    assert data["curve"] == {"metric": "test_accuracy", "values": [m["test_accuracy"] for m in reports],
                             "trial_id": None}
    runs = tensorboard_scalars(data["tensorboard"])
    assert list(runs) == ["."]  # one run: the job's
    for tag in reports[0]:
        assert runs["."][tag] == [(m["epoch"], pytest.approx(m[tag], rel=1e-6)) for m in reports], tag
    with tensorboard_served(job) as url:
        assert http_status(url) == 200
        deadline = time.monotonic() + 60
        while (tags := _scalar_tags(url)).get(job) is None:  # TensorBoard loads the files after it answers
            assert time.monotonic() < deadline, tags
            time.sleep(1)
        assert set(tags[job]) == set(reports[0])


def _scalar_tags(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{url}data/plugin/scalars/tags", timeout=10) as reply:
        return json.load(reply)


@pytest.mark.soak  # TensorFlow's start-up makes it a minute; `make soak`
def test_keras_mlp_trains_with_tensorflow(local_cluster):
    pytest.importorskip("tensorflow")
    view = _submit_and_wait("jobs/digits/keras-mlp.yaml")
    assert view["state"] == JobState.SUCCEEDED
    assert view["metrics"]["test_accuracy"] >= 0.90
    meta = _ray_job(local_cluster, view["job"])["metadata"]
    assert meta["orch_framework"] == "tensorflow"
    assert meta["orch_name"] == "digits-keras"
    data = json.loads(run_orch("results", view["job"], "--json").stdout)
    written = tensorboard_scalars(data["tensorboard"])["."]["test_accuracy"]  # any framework's reports
    assert [value for _, value in written] == pytest.approx(data["curve"]["values"], rel=1e-6)


def test_list_status_logs_cancel(local_cluster):
    started = run_orch("submit", "jobs/digits/torch-cnn.yaml", "--json", "--set", "config.epochs=500")
    assert started.returncode == 0, started.stderr
    job = json.loads(started.stdout)["job"]
    listed = json.loads(run_orch("list", "--json").stdout)
    assert job in [v["job"] for v in listed]
    status = json.loads(run_orch("status", job, "--json").stdout)
    for key in ("job", "name", "state", "priority", "queue", "accelerator", "workers", "reason",
                "restarts", "metrics", "ray_job_id"):
        assert key in status
    # Cancelled before Ray starts its entrypoint (a slow runtime-env setup), the job's log never says it.
    deadline = time.monotonic() + 300
    while "Running entrypoint" not in run_orch("logs", job).stdout:
        assert time.monotonic() < deadline, f"{job}'s entrypoint did not start within 300 s"
        time.sleep(1)
    cancelled = run_orch("cancel", job, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    from orchestrator.client import api

    view = api.wait(job, poll_s=0.5)
    assert view.state == JobState.CANCELLED
    assert "Running entrypoint" in run_orch("logs", job).stdout
    deadline = time.monotonic() + 60
    while _ray_job(local_cluster, view.ray_job_id)["status"] != "STOPPED":  # Ray's stop: SIGTERM, then SIGKILL
        assert time.monotonic() < deadline, f"Ray still runs {view.ray_job_id} after its cancel"
        time.sleep(1)


def test_failing_loop_reports_failed_with_reason(local_cluster, tmp_path):
    (tmp_path / "boom.py").write_text("def train_loop(config):\n    raise ValueError('boom at step 0')\n")
    (tmp_path / "job.yaml").write_text("name: boom\nentrypoint: boom.py:train_loop\nfailure: {max_failures: 0}\n")
    done = run_orch("submit", str(tmp_path / "job.yaml"), "--wait", "--json")
    assert done.returncode == 1
    view = json.loads(done.stdout)
    assert view["state"] == JobState.FAILED
    assert "boom at step 0" in view["reason"]
