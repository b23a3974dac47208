"""The control plane's loop against a fake Ray: admission, preemption, crash recovery, secrets.

`Control.step()` takes its Ray Jobs client and cluster snapshot as arguments,
so these run in milliseconds with no cluster; the integration tests run the
same code against real Ray.
"""

from __future__ import annotations

import io
import json
import shlex
import stat
import threading
from pathlib import Path

import pytest

from orchestrator.adapters import packages
from orchestrator.control.loop import ACTIVE, Control
from orchestrator.control.store import Store
from orchestrator.core import events
from orchestrator.core.errors import ClusterUnavailable, InfeasibleError, JobNotFound, SpecError
from orchestrator.core.protocol import TEMPFAIL
from orchestrator.core.snapshot import ClusterSnapshot, Node
from orchestrator.core.lifecycle import JobState, driver_losses
from orchestrator.core.spec import JobSpec
from orchestrator.load.cluster import ClusterFile, NodeEntry, snapshot_from_cluster

CPUS = 2.0


class FakeJobs:
    """Ray's Jobs API as the control plane uses it; jobs run until a test ends them."""

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.requests: dict[str, dict] = {}
        self.log: dict[str, str] = {}
        self.packages: dict[str, bytes] = {}  # job code put back into the GCS
        self.put_anew: list[bool] = []  # each put-back: whether it replaced what Ray had

    def submit(self, *, entrypoint, submission_id, runtime_env, metadata):
        self.jobs[submission_id] = {"submission_id": submission_id, "status": "RUNNING", "message": ""}
        self.requests[submission_id] = {"entrypoint": entrypoint, "runtime_env": runtime_env, "metadata": metadata}
        return submission_id

    def list(self):
        return list(self.jobs.values())

    def ensure_package(self, name, path, anew=False):
        self.packages[name] = path.read_bytes()
        self.put_anew.append(anew)

    def stop(self, submission_id):
        if submission_id not in self.jobs:
            raise JobNotFound(submission_id)  # as Ray's Jobs API answers: 404
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
    assert (_state(control, "high"), _state(control, "low")) == (JobState.STARTING, JobState.QUEUED)
    control.step()  # the next round names the job that holds what low needs
    assert "held by job high" in control.store.get("low").reason
    control.jobs.end("high")
    control.step()
    assert _state(control, "high") == JobState.SUCCEEDED and _state(control, "low") in ACTIVE


def test_launch_is_a_ray_job_with_orch_metadata(control):
    _submit(control, "one")
    control.step()
    request = control.jobs.requests["one"]
    assert request["entrypoint"] == "python -m orchestrator.runners.entry one  # torch train.py:loop"
    assert request["metadata"]["orch_job"] == "one" and request["metadata"]["orch_workers"] == "2"
    assert json.loads(request["runtime_env"]["env_vars"]["ORCH_JOB"])["scaling"]["num_workers"] == 2


def test_a_sweeps_trial_slots_are_held_until_it_ends(control):
    sweep = {**_spec("sweep", workers=1), "config": {"lr": 0.1},
             "sweep": {"metric": "loss", "mode": "min", "samples": 4, "space": {"lr": {"uniform": [0.01, 0.1]}}}}
    control.submit({"job": "sweep", "spec": sweep, "request": {"runtime_env": {"env_vars": {}}}, "secrets": None})
    _submit(control, "after", workers=1)
    control.step()
    payload = json.loads(control.jobs.requests["sweep"]["runtime_env"]["env_vars"]["ORCH_JOB"])
    assert len(payload["plan"]["trials"]) == 1  # two 1-CPU trials at once on the 2 CPUs
    control.step()
    assert _state(control, "after") == JobState.QUEUED and "held by job sweep" in control.store.get("after").reason
    control.jobs.end("sweep")
    control.step()
    assert _state(control, "after") in ACTIVE


def test_cluster_report_shows_nodes_and_what_each_queue_holds(control):
    _submit(control, "one", workers=2)
    _submit(control, "two", workers=2)
    control.step()
    report = control.cluster()
    assert [n["name"] for n in report["nodes"]] == ["local-0"]
    assert report["queues"]["default"]["used"] == {"CPU": 2.0, "memory": 2 * 1024**3}
    assert report["queues"]["default"]["borrowed"] == {} and report["queues"]["default"]["quota"] is None


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
    assert history[-2:] == [JobState.PREEMPTED, JobState.QUEUED] and _state(control, "high") in ACTIVE
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


def test_the_store_refuses_moves_the_job_states_do_not_allow(control):
    _submit(control, "a")
    history = control.store.get("a").history
    assert control.store.transition("a", JobState.RUNNING) is False  # QUEUED -> RUNNING skips STARTING
    assert _state(control, "a") == JobState.QUEUED and control.store.get("a").history == history
    assert control.store.transition("a", JobState.CANCELLED, "cancelled") is True
    # A poll that saw the job end after the cancel leaves it cancelled.
    assert control.store.transition("a", JobState.SUCCEEDED) is False
    assert _state(control, "a") == JobState.CANCELLED and control.store.get("a").reason == "cancelled"


def test_each_launch_puts_the_jobs_kept_code_back_into_ray(control):
    name = "_ray_pkg_00112233445566778899.zip"
    control.packages.keep(name, io.BytesIO(b"zipped code"), 11)
    control.submit({"job": "one", "spec": _spec("one"), "secrets": None,
                    "request": {"runtime_env": {"working_dir": f"gcs://{name}", "env_vars": {}}}})
    _submit(control, "two")  # its working_dir is no kept package: nothing to put back
    control.step()
    assert control.jobs.packages == {name: b"zipped code"} and "one" in control.jobs.jobs


def _submit_with_code(control: Control, job: str, name: str = "_ray_pkg_00112233445566778899.zip") -> None:
    control.packages.keep(name, io.BytesIO(b"zipped code"), 11)
    control.submit({"job": job, "spec": _spec(job), "secrets": None,
                    "request": {"runtime_env": {"working_dir": f"gcs://{name}", "env_vars": {}}}})


def _code_not_set_up(control: Control, submission: str) -> None:
    """Ray's record of an attempt whose runtime env its agent could not set up."""
    control.jobs.jobs[submission].update(
        status="FAILED", error_type="RUNTIME_ENV_SETUP_FAILURE", driver_exit_code=None,
        message="runtime_env setup failed: Failed to set up runtime environment.\nTraceback ...\n"
                "OSError: Failed to download runtime_env file package gcs://_ray_pkg_x.zip from the GCS")


def test_an_attempt_whose_code_ray_could_not_set_up_is_relaunched_with_the_package_put_back(control):
    _submit_with_code(control, "one")
    control.step()
    assert control.jobs.put_anew == [False]  # the first launch puts it back only if Ray lacks it
    for attempt in (1, 2):
        _code_not_set_up(control, "one" if attempt == 1 else f"one-attempt{attempt}")
        control.step()  # requeued and, the CPUs being free, launched again with the package put back anew
        assert control.jobs.put_anew[-1] is True and _state(control, "one") == JobState.STARTING
    requeue = [h["reason"] for h in control.store.get("one").history if h["state"] == JobState.QUEUED][1:]
    assert len(requeue) == 2 and all(r.startswith("Ray could not set up its code") for r in requeue)
    assert "OSError: Failed to download" in requeue[0] and "launch 1 of 3" in requeue[0]
    control.jobs.end("one-attempt3")  # the third launch runs
    control.step()
    row = control.store.get("one")
    assert row.state == JobState.SUCCEEDED and row.attempt == 3
    assert driver_losses(row.history) == 0  # no restart counted against max_failures: the loop never ran


def test_a_job_whose_code_ray_could_not_set_up_three_times_fails_saying_what_orch_did(control):
    _submit_with_code(control, "one")
    control.step()
    for submission in ("one", "one-attempt2", "one-attempt3"):
        _code_not_set_up(control, submission)
        control.step()
    row = control.store.get("one")
    assert row.state == JobState.FAILED and row.attempt == 3
    assert row.reason.startswith("Ray could not set up the job's runtime env in 3 launches; orch put its code "
                                 "package back into Ray before each: OSError: Failed to download")


def test_a_job_whose_code_is_not_kept_fails_at_once_when_ray_cannot_set_it_up(control):
    _submit_with_code(control, "one")
    control.step()
    (control.packages.folder / "_ray_pkg_00112233445566778899.zip").unlink()  # nothing to put back
    _code_not_set_up(control, "one")
    control.step()
    row = control.store.get("one")
    assert row.state == JobState.FAILED and "orch keeps no copy of its code; submit it again" in row.reason


def test_a_job_whose_package_was_never_uploaded_is_refused_at_submit(control):
    name = "_ray_pkg_feedfacefeedface.zip"
    with pytest.raises(SpecError, match=f"working_dir: the control plane has no package {name}"):
        control.submit({"job": "one", "spec": _spec("one"), "secrets": None,
                        "request": {"runtime_env": {"working_dir": f"gcs://{name}", "env_vars": {}}}})
    assert control.store.all() == []


def test_kept_code_is_dropped_only_when_no_queued_or_active_job_uses_it(control, monkeypatch):
    used, unused = "_ray_pkg_aaaaaaaaaaaaaaaa.zip", "_ray_pkg_bbbbbbbbbbbbbbbb.zip"
    for name in (used, unused):
        control.packages.keep(name, io.BytesIO(b"z"), 1)
    control.submit({"job": "one", "spec": _spec("one"), "secrets": None,
                    "request": {"runtime_env": {"working_dir": f"gcs://{used}", "env_vars": {}}}})
    monkeypatch.setattr(packages, "UNUSED_S", -1.0)  # as if both were last used long ago
    assert control.forget_packages() == [unused]
    control.cancel("one")
    assert control.forget_packages() == [used]


def test_cancel_by_name_stops_the_running_job_of_that_name_not_a_newer_ended_one(control):
    for job in ("train-1", "train-2"):
        control.submit({"job": job, "spec": _spec("train"), "request": {"runtime_env": {"env_vars": {}}},
                        "secrets": None})
    control.step()  # train-1 starts; train-2 waits behind it and is cancelled
    control.cancel("train-2")
    assert control.cancel("train") == (control.store.get("train-1"), True)
    assert _state(control, "train-1") == JobState.CANCELLED
    assert control.cancel("train") == (control.store.get("train-2"), False)  # none left running: the latest, as it is


def test_an_ended_attempts_events_and_log_end_are_kept_past_the_clusters_life(control):
    result = {"event": "result", "metrics": {"acc": 0.9}, "checkpoint": "/storage/one/checkpoint_1"}
    _submit(control, "one")
    control.step()
    control.jobs.log["one"] = "epoch 0\n" + f"{events.MARK} {json.dumps(result)}\n"
    control.jobs.end("one")
    control.step()
    assert _state(control, "one") == JobState.SUCCEEDED
    del control.jobs.jobs["one"], control.jobs.log["one"]  # a restarted cluster knows nothing of it
    assert control.store.kept_events("one") == {1: [result]}
    assert control.store.kept_log("one", 1).startswith("epoch 0")


def test_a_cancelled_attempt_is_kept_too(control):
    _submit(control, "one")
    control.step()
    control.jobs.log["one"] = f"{events.MARK} {json.dumps({'event': 'report', 'metrics': {'epoch': 3}})}\n"
    control.cancel("one")
    assert control.store.kept_events("one") == {1: [{"event": "report", "metrics": {"epoch": 3}}]}


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "CANCEL"])
def test_a_kept_log_masks_the_jobs_secrets_and_ray_is_asked_for_it_once(control, status, monkeypatch):
    _submit(control, "one", secrets={"API_KEY": "s3cr3t-value"},
            env={"API_KEY": {"from_env": "API_KEY", "secret": True}})
    control.step()
    failed = {"event": "failed", "error": "bad key s3cr3t-value"}
    control.jobs.log["one"] = f"key=s3cr3t-value\n{events.MARK} {json.dumps(failed)}\n"
    asked = []
    monkeypatch.setattr(control.jobs, "logs", lambda sid: asked.append(sid) or control.jobs.log[sid])
    if status == "CANCEL":
        control.cancel("one")
    else:
        control.jobs.end("one", status)
        control.step()
    kept = control.store.kept_log("one", 1) + json.dumps(control.store.kept_events("one"))
    assert "s3cr3t-value" not in kept and "key=***" in kept and asked == ["one"]
    assert "s3cr3t-value" not in (control.store.get("one").reason or "")


def test_cancel_of_a_job_written_but_never_handed_to_ray_cancels_it(control):
    _submit(control, "one")
    control.step()
    del control.jobs.jobs["one"]  # the control plane died between its write and Ray's accept
    assert control.cancel("one")[0].state == JobState.CANCELLED
    control.step()
    assert "one" not in control.jobs.jobs and _state(control, "one") == JobState.CANCELLED


def test_a_cancel_during_the_launch_waits_for_it_then_stops_the_job(control):
    entered, release = threading.Event(), threading.Event()
    submit = control.jobs.submit

    def slow_submit(**request):  # Ray's upload and accept take a while
        entered.set()
        release.wait(5)
        return submit(**request)

    control.jobs.submit = slow_submit
    _submit(control, "one")
    step = threading.Thread(target=control.step)
    step.start()
    assert entered.wait(5)
    cancelled = []
    cancel = threading.Thread(target=lambda: cancelled.append(control.cancel("one")))
    cancel.start()
    cancel.join(0.2)
    assert cancel.is_alive() and not cancelled  # it waits for the launch to reach Ray
    release.set()
    step.join(5)
    cancel.join(5)
    assert cancelled[0][0].state == JobState.CANCELLED and control.jobs.jobs["one"]["status"] == "STOPPED"


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
    assert "s3cr3t-value" not in json.dumps(control.store.get("one").__dict__, default=repr)
    control.jobs.end("one")
    control.step()
    assert control.store.secrets("one") == {}  # an ended job's secrets are deleted


def test_a_killed_driver_is_requeued_within_max_failures_then_fails(control):
    _submit(control, "one")  # failure.max_failures defaults to 2
    control.step()
    for attempt in (1, 2, 3):
        submission = control.store.get("one").ray_submission_id
        assert submission == ("one" if attempt == 1 else f"one-attempt{attempt}")
        control.jobs.end(submission, "FAILED")
        control.jobs.jobs[submission]["driver_exit_code"] = 137  # SIGKILL
        control.step()  # requeued and, the cluster being free, launched again in the same round
    row = control.store.get("one")
    assert row.state == JobState.FAILED and row.attempt == 3
    requeues = [h["reason"] for h in row.history if h["state"] == JobState.QUEUED and h["reason"]]
    assert len(requeues) == 2 and all(r.startswith("driver lost (exit code 137)") for r in requeues)


def test_a_loop_that_fails_on_its_own_is_not_retried(control):
    _submit(control, "one")
    control.step()
    control.jobs.log["one"] = f"{events.MARK} {json.dumps({'event': 'failed', 'error': 'ValueError: bad lr'})}\n"
    control.jobs.end("one", "FAILED")
    control.jobs.jobs["one"]["driver_exit_code"] = 1
    control.step()
    assert _state(control, "one") == JobState.FAILED and control.store.get("one").reason == "ValueError: bad lr"


# ---- a cluster the autoscaler grows (issue 8) ------------------------------------------

GIB = 1024**3


def _max_scale() -> ClusterSnapshot:
    """The cluster at its largest: the head, and a node type the autoscaler may launch twice."""
    return snapshot_from_cluster(ClusterFile(name="test", nodes=[
        NodeEntry(name="head", cpus=CPUS, memory=8 * GIB),
        NodeEntry(name="a100-pool", count=2, cpus=8, memory=64 * GIB, accelerator="A100:4")]))


def _a100_node(name: str) -> Node:
    """A node the autoscaler launched: Ray labels it with its node type."""
    model = _max_scale().node("a100-pool-0")
    return Node(name, dict(model.total), dict(model.total), {**model.labels, "ray.io/node-group": "a100-pool"})


@pytest.fixture
def scaling(tmp_path):
    live = [_snapshot().nodes[0]]  # the head only, until a test adds nodes that joined
    made = Control(Store(tmp_path / "control.db"), FakeJobs(), lambda: ClusterSnapshot("test", tuple(live)),
                   str(tmp_path / "storage"), clock=Clock(), grace_s=60, max_scale_source=_max_scale)
    made.live = live
    yield made
    made.store.close()


def _gpu_job(control: Control, job: str, workers: int = 1, accelerator: str = "A100:4", **schedule) -> None:
    spec = JobSpec.model_validate({
        "name": job, "entrypoint": "train.py:loop", "working_dir": ".",
        "resources": {"workers": workers, "cpus": 1, "memory": "1GiB", "accelerator": accelerator},
        "schedule": {"priority": 100, **schedule}}).model_dump(mode="json")
    control.submit({"job": job, "spec": spec, "request": {"runtime_env": {"env_vars": {}}}})


def test_a_job_for_nodes_the_autoscaler_can_add_is_queued_then_launched_to_make_them_come(scaling):
    _gpu_job(scaling, "big", workers=2)  # no A100 node exists yet: accepted, not refused
    assert _state(scaling, "big") == JobState.QUEUED
    scaling.step()  # launched: its placement group pends, and that is what makes the autoscaler act
    row = scaling.store.get("big")
    assert row.state == JobState.STARTING and "big" in scaling.jobs.jobs
    assert row.reason == "waits for the autoscaler: 2 x A100 node (a100-pool)"
    assert row.plan.record["nodes"] == ["a100-pool/new-0", "a100-pool/new-1"]
    scaling.live += [_a100_node("5e1f0a2b"), _a100_node("77c0d9e4")]  # the nodes joined
    scaling.step()
    assert scaling.store.get("big").reason is None
    _gpu_job(scaling, "next")  # the type is at its max_workers, both nodes held by big
    scaling.step()
    assert _state(scaling, "next") == JobState.QUEUED and "held by job big" in scaling.store.get("next").reason


def test_plan_says_a_job_for_nodes_the_autoscaler_can_add_waits_for_them(scaling):
    spec = JobSpec.model_validate({"name": "big", "entrypoint": "train.py:loop", "resources": {
        "workers": 2, "cpus": 1, "memory": "1GiB", "accelerator": "A100:4"}}).model_dump(mode="json")
    shown = scaling.plan(spec)
    assert shown["status"] == "queued" and shown["nodes"] == ["a100-pool/new-0", "a100-pool/new-1"]
    assert shown["reasons"] == ["waits for the autoscaler: 2 x A100 node (a100-pool)"]
    spec["resources"]["workers"] = 3
    shown = scaling.plan(spec)  # more than the autoscaler may add
    assert shown["status"] == "infeasible" and shown["reasons"][0].startswith("cannot run on this cluster")


def test_a_sweep_launched_for_a_new_node_gets_the_trial_slots_that_node_holds(scaling):
    spec = JobSpec.model_validate({
        "name": "gpu-sweep", "entrypoint": "train.py:loop", "config": {"lr": 0.1},
        "resources": {"cpus": 1, "memory": "1GiB", "accelerator": "A100:1"},
        "sweep": {"metric": "loss", "mode": "min", "samples": 8, "space": {"lr": {"uniform": [0.01, 0.1]}}},
    }).model_dump(mode="json")
    scaling.submit({"job": "gpu-sweep", "spec": spec, "request": {"runtime_env": {"env_vars": {}}}})
    scaling.step()
    row = scaling.store.get("gpu-sweep")
    assert row.state == JobState.STARTING and row.reason == "waits for the autoscaler: 1 x A100 node (a100-pool)"
    assert [t["nodes"] for t in row.plan.record["trials"]] == [["a100-pool/new-0"]] * 3  # the node's other 3 GPUs


def test_a_job_for_new_nodes_waits_queued_behind_a_job_ahead_that_wants_them(scaling):
    _gpu_job(scaling, "one")
    scaling.step()  # on the first new A100 node
    _gpu_job(scaling, "pair", workers=2, priority=200)  # needs both nodes: waits for one to end
    _gpu_job(scaling, "solo", priority=50)  # would take the last node pair waits for
    scaling.step()
    assert (_state(scaling, "pair"), _state(scaling, "solo")) == (JobState.QUEUED, JobState.QUEUED)
    pair, solo = scaling.store.get("pair").reason, scaling.store.get("solo").reason
    assert pair.startswith("waits for 8 x A100: 4 free, 4 held by job one")
    assert solo == ("waits for the autoscaler: 1 x A100 node (a100-pool); "
                    "behind pair, which waits ahead of it for the same nodes")
    scaling.jobs.end("one")
    scaling.step()
    assert _state(scaling, "pair") in ACTIVE and _state(scaling, "solo") == JobState.QUEUED


def test_launching_on_a_new_node_beats_preempting(scaling):
    scaling.live.append(_a100_node("5e1f0a2b"))
    _gpu_job(scaling, "low", priority=10, preemptible=True)
    scaling.step()
    assert scaling.store.get("low").plan.record["nodes"] == ["5e1f0a2b"]
    _gpu_job(scaling, "high", priority=200)
    scaling.step()
    assert scaling.store.get("low").preempt_requested_at is None
    high = scaling.store.get("high")
    assert high.state == JobState.STARTING and high.reason == "waits for the autoscaler: 1 x A100 node (a100-pool)"


def test_a_job_no_node_type_can_hold_is_refused_at_submit_with_reasons(scaling):
    for accelerator, workers, reason in (("H100:1", 1, "no node has H100"), ("A100:4", 3, "needs 3 workers")):
        with pytest.raises(InfeasibleError) as refused:
            _gpu_job(scaling, "never", workers=workers, accelerator=accelerator)
        assert refused.value.exit_code == 2 and reason in " ".join(refused.value.reasons)
        assert "at its largest" in refused.value.reasons[-1]
    assert scaling.store.all() == []


def test_without_an_autoscaler_a_job_for_missing_nodes_is_refused_as_before(control):
    with pytest.raises(InfeasibleError):
        _gpu_job(control, "gpu")


def test_a_driver_that_lost_its_ray_processes_is_requeued(control):
    _submit(control, "one")
    control.step()
    control.jobs.log["one"] = f"{events.MARK} {json.dumps({'event': 'lost', 'error': 'ActorDiedError: ...'})}\n"
    control.jobs.end("one", "FAILED")
    control.jobs.jobs["one"]["driver_exit_code"] = TEMPFAIL
    control.step()
    row = control.store.get("one")
    assert row.state in ACTIVE and row.attempt == 2 and row.ray_submission_id == "one-attempt2"


def test_a_jobs_events_come_from_the_store_for_kept_attempts_and_from_ray_for_the_rest():
    from orchestrator.client import api

    asked = []

    class Jobs:
        def logs(self, submission_id):
            asked.append(submission_id)
            return f"{events.MARK} {json.dumps({'event': 'report', 'metrics': {'epoch': 5}})}\n"

    row = {"id": "j", "attempt": 2, "spec": {"env": {}},
           "kept_events": {"1": [{"event": "report", "metrics": {"epoch": 4}}]}}  # JSON keys are strings
    found = api._events(Jobs(), row)
    assert [(e["attempt"], e["metrics"]["epoch"]) for e in found] == [(1, 4), (2, 5)] and asked == ["j-attempt2"]


@pytest.mark.parametrize("in_ray, epochs", [("report", [3, 5]), ("", [3, 4])])
def test_a_cancelled_attempt_is_read_from_ray_while_ray_has_it(in_ray, epochs):
    """Kept as its stop began, a cancelled attempt may lack its last reports: Ray's log has them."""
    from orchestrator.client import api

    class Jobs:
        def logs(self, submission_id):
            return "".join(f"{events.MARK} {json.dumps({'event': 'report', 'metrics': {'epoch': e}})}\n"
                           for e in (3, 5)) if in_ray else ""

    row = {"id": "j", "attempt": 1, "state": "CANCELLED", "spec": {"env": {}},
           "kept_events": {"1": [{"event": "report", "metrics": {"epoch": e}} for e in (3, 4)]}}
    assert [e["metrics"]["epoch"] for e in api._events(Jobs(), row)] == epochs


SECRET_ENV = {"API_KEY": {"from_env": "API_KEY", "secret": True}}


def _secrets_files(control) -> list[str]:
    return sorted(p.name for p in (Path(control.storage) / ".orch-secrets").glob("*"))


def test_a_failed_jobs_reason_from_rays_message_masks_the_secret(control):
    _submit(control, "one", secrets={"API_KEY": "sk-SECRET123"}, env=SECRET_ENV)
    control.step()
    control.jobs.jobs["one"]["message"] = "Traceback ...\nKeyError: 'sk-SECRET123'\n"  # Ray's log tail
    control.jobs.jobs["one"]["driver_exit_code"] = 1
    control.jobs.end("one", "FAILED")
    control.step()
    row = control.store.get("one")
    assert row.state == JobState.FAILED and row.reason == "KeyError: '***'"
    assert "sk-SECRET123" not in json.dumps(row.history)


def test_no_secrets_file_outlives_an_attempt(control):
    for job in ("done", "cancelled", "refused"):
        _submit(control, job, workers=1, secrets={"API_KEY": "v"}, env=SECRET_ENV)
    control.step()
    assert _secrets_files(control) == ["cancelled.json", "done.json"]  # two fit: the drivers read them
    control.jobs.end("done")
    control.cancel("cancelled")
    control.jobs.submit = lambda **_: (_ for _ in ()).throw(RuntimeError("bad runtime env"))
    control.step()
    assert _state(control, "refused") == JobState.FAILED and _secrets_files(control) == []


def test_ray_out_of_reach_at_launch_leaves_the_job_starting_and_launches_it_again(control):
    _submit(control, "one", secrets={"API_KEY": "v"}, env=SECRET_ENV)
    submit = control.jobs.submit
    control.jobs.submit = lambda **_: (_ for _ in ()).throw(ClusterUnavailable("cannot reach the Ray Jobs API"))
    control.step()
    assert _state(control, "one") == JobState.STARTING and _secrets_files(control) == []
    control.jobs.submit = submit
    control.step()
    assert "one" in control.jobs.jobs and _state(control, "one") in ACTIVE


def test_an_ended_attempt_waits_a_few_steps_for_its_log_then_moves_on(control, monkeypatch):
    _submit(control, "one")
    control.step()
    control.jobs.end("one")
    monkeypatch.setattr(control.jobs, "logs", lambda sid: (_ for _ in ()).throw(TimeoutError("slow")))
    for _ in range(2):
        control.step()
        assert _state(control, "one") in ACTIVE  # not ended yet: nothing kept, no retry decided
    control.step()  # the third read fails too: it ends without a kept copy
    assert _state(control, "one") == JobState.SUCCEEDED and control.store.kept_log("one", 1) is None


def test_a_cancel_during_a_long_step_says_to_try_again_and_cancels_nothing(control, monkeypatch):
    import orchestrator.control.loop as control_module

    _submit(control, "one")
    monkeypatch.setattr(control_module, "CANCEL_WAIT_S", 0.05)
    with control._step_lock:  # a step in progress
        with pytest.raises(ClusterUnavailable, match="try again"):
            control.cancel("one")
    assert _state(control, "one") == JobState.QUEUED


def test_the_store_is_private_and_keeps_no_trace_of_an_ended_jobs_secrets(control):
    _submit(control, "one", secrets={"API_KEY": "sk-QA-queued-Sup3rQ"}, env=SECRET_ENV)
    db = control.store.folder / "control.db"
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files if f.exists())
    control.step()
    control.jobs.end("one")
    control.step()
    assert _state(control, "one") == JobState.SUCCEEDED
    assert not any(b"sk-QA-queued-Sup3rQ" in f.read_bytes() for f in files if f.exists())


def test_orch_list_shows_an_ended_jobs_restarts_and_metrics_without_reading_logs(control, monkeypatch):
    from orchestrator.client import api
    from orchestrator.control import service

    _submit(control, "one")
    control.step()
    lines = [{"event": "report", "metrics": {"epoch": 1}}, {"event": "worker_failure", "causes": {}},
             {"event": "report", "metrics": {"epoch": 2, "acc": 0.9}}]
    control.jobs.log["one"] = "".join(f"{events.MARK} {json.dumps(e)}\n" for e in lines)
    control.jobs.end("one")
    control.step()
    rows = service.jobs_json(control)
    monkeypatch.setattr(api, "_clients", lambda address: (type("C", (), {"list": lambda self: rows})(), None))
    [view] = api.list_jobs()
    assert (view.state, view.restarts, view.metrics) == (JobState.SUCCEEDED, 1, {"epoch": 2, "acc": 0.9})


def _preempt_and_relaunch(control: Control, job: str) -> None:
    """``job`` (preemptible, running) preempted by a higher job that then ends: it runs again."""
    _submit(control, "high", priority=200)
    control.step()
    at = control.clock() + 1
    control.jobs.log[job] = f"{events.MARK} {json.dumps({'event': 'report', 'checkpoint': '/c', 'at': at})}\n"
    control.step()
    control.step()
    control.jobs.end("high")
    control.step()


def test_the_dashboard_shows_the_orch_name_each_attempt_and_what_the_job_runs(control):
    control.submit({"job": "digits-1a2b3c", "spec": _spec("digits", priority=10, preemptible=True),
                    "request": {"runtime_env": {"env_vars": {}}}, "secrets": None})
    control.step()
    first = control.jobs.requests["digits-1a2b3c"]
    assert first["metadata"]["job_name"] == "digits" and first["metadata"]["orch_name"] == "digits"
    assert first["entrypoint"] == "python -m orchestrator.runners.entry digits-1a2b3c  # torch train.py:loop"
    _preempt_and_relaunch(control, "digits-1a2b3c")
    second = control.jobs.requests["digits-1a2b3c-attempt2"]
    assert second["metadata"]["job_name"] == "digits (attempt 2)" and second["metadata"]["orch_attempt"] == "2"
    assert second["entrypoint"] == first["entrypoint"]


def test_a_job_id_that_is_not_a_plain_word_reaches_the_drivers_shell_as_one_quoted_word(control):
    control.submit({"job": "x'; touch owned #", "spec": _spec("x"), "request": {"runtime_env": {"env_vars": {}}},
                    "secrets": None})
    control.step()
    entrypoint = control.jobs.requests["x'; touch owned #"]["entrypoint"]
    argv = ["python", "-m", "orchestrator.runners.entry", "x'; touch owned #"]
    assert shlex.split(entrypoint, comments=True) == argv and entrypoint.endswith("  # torch train.py:loop")


# ---- time limits and estimates (issue 20) ------------------------------------------------


def _submit_limited(control: Control, job: str, limit: str = "2h", **spec) -> None:
    limited = _spec(job, **spec)
    limited["schedule"]["time_limit"] = limit
    control.submit({"job": job, "spec": limited, "request": {"runtime_env": {"env_vars": {}}}, "secrets": None})


def _checkpoint_now(control: Control, submission: str) -> None:
    at = control.clock() + 1
    control.jobs.log[submission] = f"{events.MARK} {json.dumps({'event': 'report', 'checkpoint': '/c', 'at': at})}\n"


def test_a_job_at_its_time_limit_is_stopped_after_a_checkpoint_and_fails_unretried(control):
    _submit_limited(control, "limited")
    control.step()
    control.step()  # Ray says RUNNING: its running time counts from here
    control.clock.now += 7199
    control.step()
    assert control.store.get("limited").preempt_requested_at is None
    control.clock.now += 1
    control.step()  # at the limit: asked to stop; it runs on until its next checkpoint
    row = control.store.get("limited")
    assert row.preempt_requested_at == control.clock() and row.reason.startswith("time limit 2h reached")
    assert control.jobs.jobs["limited"]["status"] == "RUNNING"
    _checkpoint_now(control, "limited")
    control.step()  # checkpoint seen: stopped
    assert control.jobs.jobs["limited"]["status"] == "STOPPED"
    control.step()  # Ray says STOPPED: FAILED at the limit, not requeued
    control.step()
    row = control.store.get("limited")
    assert (row.state, row.reason, row.ended_at) == (JobState.FAILED, "time limit 2h reached", control.clock())
    assert JobState.PREEMPTED not in [h["state"] for h in row.history] and list(control.jobs.jobs) == ["limited"]


def test_a_time_limit_counts_running_time_over_attempts_and_stops_after_the_grace(control):
    _submit_limited(control, "low", "1h", priority=10, preemptible=True)
    control.step()
    control.step()
    control.clock.now += 1800  # half its hour, then preempted for high
    _submit(control, "high", priority=200)
    control.step()
    _checkpoint_now(control, "low")
    control.step()
    control.step()
    assert _state(control, "low") == JobState.QUEUED
    control.clock.now += 5000  # queued time does not count
    control.jobs.end("high")
    control.step()
    control.step()
    assert control.store.get("low").ray_submission_id == "low-attempt2" and _state(control, "low") == JobState.RUNNING
    control.clock.now += 1799
    control.step()
    assert control.store.get("low").preempt_requested_at is None
    control.clock.now += 2
    control.step()  # 30 min + 30 min: asked to stop; it never checkpoints, so the grace ends it
    control.clock.now += 60
    control.step()
    control.step()
    row = control.store.get("low")
    assert (row.state, row.reason) == (JobState.FAILED, "time limit 1h reached")
    assert "low-attempt3" not in control.jobs.jobs


def test_plan_and_job_json_carry_the_estimate_from_the_stores_history(control):
    from orchestrator.control.service import job_json, jobs_json

    first = {"runtime_env": {"env_vars": {}}}
    control.submit({"job": "digits-0", "spec": _spec("digits", workers=1), "request": first, "secrets": None})
    control.step()
    control.step()
    control.clock.now += 120
    control.jobs.end("digits-0")
    control.step()
    spec = {**_spec("digits", workers=1), "hints": {"runtime": "45m", "params": None}}
    planned = control.plan(spec)
    assert planned["estimate"] == {"runtime_s": 120.0, "basis": "history: 1 run on CPU x1",
                                   "start_in_s": None, "end_in_s": None}
    control.submit({"job": "digits-1", "spec": spec, "request": {"runtime_env": {"env_vars": {}}}, "secrets": None})
    assert job_json(control, control.store.get("digits-1"))["estimate"]["basis"] == "history: 1 run on CPU x1"
    listed = {row["id"]: row["estimate"] for row in jobs_json(control)}
    assert listed["digits-1"]["runtime_s"] == 120.0
    assert control.plan(_spec("fresh", workers=1))["estimate"]["basis"] is None


def test_a_plans_queue_position_counts_the_queued_jobs_of_its_priority_or_higher(control):
    for job, priority in (("low", 10), ("same", 100), ("high", 200), ("higher", 300)):
        _submit(control, job, priority=priority)
    control.step()  # "higher" starts: no longer queued
    assert _state(control, "higher") == "STARTING"
    assert control.plan(_spec("next", priority=100))["queue_position"] == 2  # same and high
    assert control.plan(_spec("next", priority=0))["queue_position"] == 3
    assert control.plan(_spec("next", priority=1000))["queue_position"] == 0
