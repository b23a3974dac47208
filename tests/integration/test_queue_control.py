"""The control plane on the shared local cluster: queueing, preemption, crash safety, concurrency.

The local cluster has 2 CPUs; every job here asks for 2 workers x 1 CPU, so
one job fills it and the next must queue.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, own_cluster, run_orch, wait_until_ended

pytestmark = pytest.mark.ray
SPEC = "jobs/digits/torch-mlp.yaml"
WHERE = REPO / "tests" / "data" / "placement"  # where.py: a loop that sleeps config["hold_s"]


def _submit(*sets: str) -> str:
    args = [a for s in sets for a in ("--set", s)]
    done = run_orch("submit", SPEC, "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["job"]


def _status(job: str) -> dict:
    done = run_orch("status", job, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _wait_for(job: str, predicate, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = _status(job)
        if predicate(view):
            return view
        time.sleep(1)
    raise AssertionError(f"{job} never reached the condition; last: {view}")


def _finished(view: dict) -> bool:
    return view["state"] in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def test_preempted_job_resumes_from_its_checkpoint(local_cluster):
    low = _submit("name=low", "schedule.priority=10", "schedule.preemptible=true", "config.epochs=10")
    _wait_for(low, lambda v: v["state"] == JobState.RUNNING and (v["metrics"] or {}).get("epoch", -1) >= 1)
    high = _submit("name=high", "schedule.priority=500", "config.epochs=2")

    high_view = _wait_for(high, _finished)
    assert high_view["state"] == JobState.SUCCEEDED
    low_view = _wait_for(low, _finished)
    assert low_view["state"] == JobState.SUCCEEDED, low_view
    states = [h["state"] for h in low_view["history"]]
    assert JobState.PREEMPTED in states and states.index(JobState.PREEMPTED) < len(states) - 1
    assert low_view["attempt"] == 2

    history = json.loads(run_orch("results", low, "--json").stdout)["history"]
    first = [m["epoch"] for m in history if m["attempt"] == 1]
    second = [m["epoch"] for m in history if m["attempt"] == 2]
    # The second attempt continues right after the first one's last checkpoint, never from 0.
    # That checkpoint may be one whose report line the stop cut off, hence + 2.
    assert first and second and second[0] > 0
    assert max(first) + 1 <= second[0] <= max(first) + 2
    assert second[-1] == 9


@pytest.mark.soak  # ~2 min; `make soak` (tests/unit/test_control.py covers the relaunch logic)
def test_killed_control_plane_loses_no_job(local_cluster):
    from orchestrator.adapters import cluster

    running = _submit("name=crash-run", "config.epochs=6")
    _wait_for(running, lambda v: v["state"] == JobState.RUNNING)
    # One worker each, so two of them run at a time once the running job is done.
    queued = [_submit(f"name=crash-q{i}", "config.epochs=1", "resources.workers=1") for i in range(5)]
    assert all(_status(j)["state"] == JobState.QUEUED for j in queued)

    pgid = cluster.read_state().control_pgid
    os.killpg(pgid, signal.SIGKILL)

    views = {j: _status(j) for j in [running, *queued]}  # the next call brings it back
    assert cluster.read_state().control_pgid != pgid
    assert views[running]["state"] == JobState.RUNNING
    assert all(views[j]["state"] == JobState.QUEUED for j in queued)
    for job in [running, *queued]:
        assert _wait_for(job, _finished, timeout=600)["state"] == JobState.SUCCEEDED


def test_concurrent_submits_lose_and_double_nothing(local_cluster):
    blocker = _submit("name=blocker", "config.epochs=50")
    names = [f"conc-{i}" for i in range(40)] + ["same-name"] * 10

    def submit(name: str) -> str:
        return _submit(f"name={name}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(submit, names))
    assert len(set(ids)) == 50
    listed = json.loads(run_orch("list", "--json").stdout)
    mine = [v for v in listed if v["job"] in set(ids)]
    assert len(mine) == 50
    assert sum(1 for v in mine if v["name"] == "same-name") == 10
    assert _status("same-name")["job"] == max((v for v in mine if v["name"] == "same-name"),
                                               key=lambda v: v["submitted_at"])["job"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        assert all(done.returncode == 0 for done in pool.map(lambda job: run_orch("cancel", job), [*ids, blocker]))
    # One listing, not 50 `orch status` processes (about a minute on 2 cores): the same table, the same states.
    states = {v["job"]: v["state"] for v in json.loads(run_orch("list", "--json").stdout)}
    assert all(states[j] == JobState.CANCELLED for j in ids)
    _until_stopped_in_ray(local_cluster, blocker)  # the session's leak check may follow at once


def _until_stopped_in_ray(local_cluster, job: str, timeout: float = 120) -> None:
    """Wait until Ray has stopped a cancelled job (a cancel asks Ray, which stops its workers after)."""
    from orchestrator.adapters.jobs import ENDED_IN_RAY, JobsClient

    deadline = time.monotonic() + timeout
    while (status := JobsClient(local_cluster).get(job)["status"]) not in ENDED_IN_RAY:
        assert time.monotonic() < deadline, f"Ray still says {status} for cancelled {job} after {timeout:.0f} s"
        time.sleep(1)


@pytest.mark.soak  # ~80 s on its own cluster; `make soak` (tests/unit/test_control.py covers the restore)
def test_a_queued_job_outlives_rays_package_expiry_and_a_cluster_restart(orch_home, tmp_path, monkeypatch):
    # Ray drops an upload nothing uses after this long (600 s by default).
    monkeypatch.setenv("RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S", "3")
    code = tmp_path / "code"
    shutil.copytree(WHERE, code)
    (code / "stamp.txt").write_text(uuid.uuid4().hex)  # a package of its own, not shared with other tests
    with own_cluster(None, "orch-pkg-"):
        blocker = _submit("name=pkg-blocker", "entrypoint=where.py:train_loop", f"working_dir={WHERE}",
                          f"config.out={tmp_path}", "config.hold_s=600")
        queued = _submit("name=pkg-queued", "entrypoint=where.py:train_loop", f"working_dir={code}",
                         f"config.out={tmp_path}", "config.hold_s=0")
        assert _status(queued)["state"] == JobState.QUEUED
        # A restart: the new cluster's GCS has none of the old uploads.
        assert run_orch("down").returncode == 0 and run_orch("up").returncode == 0
        time.sleep(6)  # and past the expiry
        assert run_orch("cancel", blocker).returncode == 0
        view = wait_until_ended(queued, timeout=300)
        assert view["state"] == JobState.SUCCEEDED, view
        # Another restart: what the job reported and the end of its log outlive the cluster.
        assert run_orch("down").returncode == 0 and run_orch("up").returncode == 0
        results = json.loads(run_orch("results", queued, "--json").stdout)
        assert results["metrics"] == {"rank": 0} and results["history"] == [{"rank": 0, "attempt": 1}]
        assert "::orch::" in run_orch("logs", queued).stdout


def test_a_driver_started_after_ray_stopped_its_job_runs_nothing(local_cluster):
    """Ray can record STOPPED for a job whose driver process is still starting, and that driver
    then runs unseen: orch's driver asks Ray first. Here a real stopped Ray Job's id is given to
    the driver by hand (the race itself is a matter of milliseconds)."""
    import subprocess
    import sys

    from orchestrator.adapters.jobs import JobsClient
    from orchestrator.core.protocol import PAYLOAD_ENV
    from orchestrator.runners.entry import RAY_JOB_CONFIG_ENV

    jobs = JobsClient(local_cluster)
    submission = f"stopped-{uuid.uuid4().hex[:6]}"
    jobs.submit(entrypoint="sleep 60", submission_id=submission, runtime_env={}, metadata={})
    jobs.stop(submission)
    deadline = time.monotonic() + 60
    while jobs.get(submission)["status"] != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.5)
    env = {**os.environ, "RAY_ADDRESS": local_cluster.gcs_address,
           PAYLOAD_ENV: json.dumps({"job": submission, "spec": {}, "plan": {}, "secrets_file": None}),
           RAY_JOB_CONFIG_ENV: json.dumps({"metadata": {"job_submission_id": submission}})}
    done = subprocess.run([sys.executable, "-m", "orchestrator.runners.entry"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0 and "stopped this job while its driver was starting" in done.stdout, done.stderr
