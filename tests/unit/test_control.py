"""The control plane's loop against a fake Ray: admission, preemption, crash recovery, secrets.

`Control.step()` takes its Ray Jobs client and cluster snapshot as arguments,
so these run in milliseconds with no cluster; the integration tests run the
same code against real Ray.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from orchestrator import events
from orchestrator.control import ACTIVE, Control
from orchestrator.snapshot import ClusterSnapshot, Node
from orchestrator.spec import JobSpec
from orchestrator.store import Store

CPUS = 2.0


class FakeJobs:
    """Ray's Jobs API as the control plane uses it; jobs run until a test ends them."""

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.requests: dict[str, dict] = {}
        self.log: dict[str, str] = {}

    def submit(self, *, entrypoint, submission_id, runtime_env, metadata):
        self.jobs[submission_id] = {"submission_id": submission_id, "status": "RUNNING", "message": ""}
        self.requests[submission_id] = {"entrypoint": entrypoint, "runtime_env": runtime_env, "metadata": metadata}
        return submission_id

    def list(self):
        return list(self.jobs.values())

    def stop(self, submission_id):
        self.jobs[submission_id]["status"] = "STOPPED"
        return True

    def logs(self, submission_id):
        return self.log.get(submission_id, "")

    def end(self, submission_id, status="SUCCEEDED"):
        self.jobs[submission_id]["status"] = status


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _snapshot() -> ClusterSnapshot:
    total = {"CPU": CPUS, "memory": 8 * 1024**3}
    return ClusterSnapshot("test", (Node("local-0", total, dict(total)),))


def _spec(name: str, workers: int = 2, priority: int = 100, preemptible: bool = False, env=None) -> dict:
    return JobSpec.model_validate({
        "name": name, "entrypoint": "train.py:loop", "working_dir": ".",
        "resources": {"workers": workers, "cpus": 1, "memory": "1GiB"},
        "schedule": {"priority": priority, "preemptible": preemptible}, "env": env or {},
    }).model_dump(mode="json")


@pytest.fixture
def control(tmp_path):
    made = Control(Store(tmp_path / "control.db"), FakeJobs(), _snapshot, str(tmp_path / "storage"),
                   clock=Clock(), grace_s=60)
    yield made
    made.store.close()


def _submit(control: Control, job: str, secrets=None, **spec) -> None:
    control.submit({"job": job, "spec": _spec(job, **spec), "request": {"runtime_env": {"env_vars": {}}},
                    "secrets": secrets})


def _state(control: Control, job: str) -> str:
    return control.store.get(job).state


def test_admits_in_priority_order_and_says_why_the_rest_wait(control):
    _submit(control, "low", priority=10)
    _submit(control, "high", priority=200)
    control.step()
    assert (_state(control, "high"), _state(control, "low")) == ("STARTING", "QUEUED")
    control.step()  # the next round names the job that holds what low needs
    assert "held by job high" in control.store.get("low").reason
    control.jobs.end("high")
    control.step()
    assert _state(control, "high") == "SUCCEEDED" and _state(control, "low") in ACTIVE


def test_launch_is_a_ray_job_with_orch_metadata(control):
    _submit(control, "one")
    control.step()
    request = control.jobs.requests["one"]
    assert request["entrypoint"] == "python -m orchestrator.entry"
    assert request["metadata"]["orch_job"] == "one" and request["metadata"]["orch_workers"] == "2"
    assert json.loads(request["runtime_env"]["env_vars"]["ORCH_JOB"])["scaling"]["num_workers"] == 2


def test_preemption_stops_after_a_checkpoint_then_requeues_and_resumes(control):
    _submit(control, "low", priority=10, preemptible=True)
    control.step()
    _submit(control, "high", priority=200)
    control.step()  # asks low to stop; it keeps running until it checkpoints
    assert _state(control, "low") in ACTIVE and control.store.get("low").preempt_requested_at
    assert control.jobs.jobs["low"]["status"] == "RUNNING"
    at = control.clock() + 1
    control.jobs.log["low"] = f"{events.MARK} {json.dumps({'event': 'report', 'checkpoint': '/c', 'at': at})}\n"
    control.step()  # checkpoint seen: stopped
    control.step()  # Ray says STOPPED: PREEMPTED, back in the queue; high starts
    history = [h["state"] for h in control.store.get("low").history]
    assert history[-2:] == ["PREEMPTED", "QUEUED"] and _state(control, "high") in ACTIVE
    control.jobs.end("high")
    control.step()
    assert _state(control, "low") in ACTIVE and control.store.get("low").ray_submission_id == "low-attempt2"


def test_preempted_job_is_stopped_when_the_grace_runs_out(control):
    _submit(control, "low", priority=10, preemptible=True)
    control.step()
    _submit(control, "high", priority=200)
    control.step()
    control.clock.now += 61
    control.step()
    assert control.jobs.jobs["low"]["status"] == "STOPPED"


def test_a_job_written_but_never_handed_to_ray_is_launched_again(control):
    _submit(control, "one")
    control.step()
    del control.jobs.jobs["one"]  # as if the control plane died between its write and Ray's accept
    control.step()
    assert "one" in control.jobs.jobs and _state(control, "one") in ACTIVE


def test_secrets_reach_only_a_private_file_never_rays_job_record(control):
    _submit(control, "one", secrets={"API_KEY": "s3cr3t-value"},
            env={"API_KEY": {"from_env": "API_KEY", "secret": True}})
    control.step()
    request = control.jobs.requests["one"]
    assert "s3cr3t-value" not in json.dumps(request)
    path = Path(json.loads(request["runtime_env"]["env_vars"]["ORCH_JOB"])["secrets_file"])
    assert json.loads(path.read_text()) == {"API_KEY": "s3cr3t-value"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cr3t-value" not in json.dumps(control.store.get("one").__dict__)
    control.jobs.end("one")
    control.step()
    assert control.store.secrets("one") == {}  # an ended job's secrets are deleted
