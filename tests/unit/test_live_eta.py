"""The live queue's sense of time: runtimes and time limits in the policy's input, estimate-aware
backfill in the control plane, and the ETAs that `orch list`, `status` and `plan` show (a
forecast of the live state, control/etas.py), against a fake Ray and a fake clock."""

from __future__ import annotations

import pytest

from orchestrator.control.loop import Control
from orchestrator.control.service import job_json, jobs_json
from orchestrator.core import estimate
from orchestrator.core.lifecycle import JobState
from orchestrator.core.spec import JobSpec
from tests.unit.test_control import _spec, control  # noqa: F401 (control: the fixture, a fake Ray and clock)


def _job(name: str, workers: int = 1, runtime: str | None = None, limit: str | None = None, priority: int = 100):
    spec = _spec(name, workers=workers, priority=priority)
    spec["hints"] = {"runtime": runtime, "params": None}
    spec["schedule"]["time_limit"] = limit
    return spec


def _submit(control: Control, name: str, **job) -> None:
    control.submit({"job": name, "spec": _job(name, **job), "request": {"runtime_env": {"env_vars": {}}},
                    "secrets": None})


def _running(control: Control, name: str, **job) -> None:
    """``name`` submitted, admitted and RUNNING from the clock's now."""
    _submit(control, name, **job)
    control.step()
    control.step()
    assert control.store.get(name).state == JobState.RUNNING


def _etas(control: Control) -> dict[str, dict]:
    control.etas.refresh(control.forecast_state())
    return {row["id"]: row["estimate"] for row in jobs_json(control)}


def test_a_job_queued_behind_a_running_one_has_an_eta_in_list_and_status(control):
    _running(control, "first", workers=2, runtime="10m")  # the whole node, until 1000 + 600
    _submit(control, "second", workers=2, runtime="5m")
    control.step()
    control.clock.now += 60
    found = _etas(control)
    assert found["first"] == {"runtime_s": 600.0, "basis": "hint", "start_in_s": 0.0, "end_in_s": 540.0}
    assert found["second"] == {"runtime_s": 300.0, "basis": "hint", "start_in_s": 540.0, "end_in_s": 840.0}
    assert job_json(control, control.store.get("second"))["estimate"]["start_in_s"] == 540.0


def test_a_job_with_no_estimate_leaves_the_eta_of_those_behind_it_unknown(control):
    _running(control, "first", workers=2)
    _submit(control, "second", workers=2, runtime="5m")
    found = _etas(control)
    assert found["first"]["end_in_s"] is None
    assert (found["second"]["start_in_s"], found["second"]["end_in_s"]) == (None, None)


def test_eta_is_null_before_the_first_forecast_and_for_ended_jobs(control):
    _running(control, "first", workers=2, runtime="10m")
    assert jobs_json(control)[0]["estimate"]["start_in_s"] is None  # no forecast ran yet
    control.jobs.end(control.store.get("first").ray_submission_id)
    control.step()
    assert control.store.get("first").state == JobState.SUCCEEDED
    assert control.forecast_state() is None  # nothing queued or running: nothing to forecast
    assert _etas(control)["first"]["start_in_s"] is None


def test_plan_says_when_a_job_submitted_now_would_start_and_end(control):
    _running(control, "first", workers=2, runtime="10m")
    _submit(control, "second", workers=2, runtime="5m")
    control.clock.now += 100
    planned = control.plan(_job("third", workers=2, runtime="2m"), eta=True)
    assert (planned["estimate"]["start_in_s"], planned["estimate"]["end_in_s"]) == (800.0, 920.0)
    higher = control.plan(_job("urgent", workers=2, runtime="2m", priority=500), eta=True)
    assert higher["estimate"]["start_in_s"] == 500.0  # ahead of "second", after "first" ends
    assert control.plan(_job("third", workers=2))["estimate"]["start_in_s"] is None  # a submit asks no ETA


def test_a_time_limit_counts_the_running_time_of_earlier_attempts(control):
    _running(control, "first", workers=2, limit="1h")
    control.clock.now += 1800
    state = control.forecast_state()
    assert state.running["first"].expected_end(state.now) == control.clock.now + 1800
    assert state.running["first"].estimate_s == 3600.0  # no history, no hint: the limit, as an upper bound


def test_a_short_job_backfills_onto_resources_reserved_for_a_waiting_one_only_with_an_estimate(control):
    _running(control, "first", workers=1, runtime="10m")  # 1 of 2 CPUs until 1600
    _submit(control, "big", workers=2, priority=200)  # waits for first's CPU: reserves the node
    _submit(control, "blind", workers=1)  # no estimate: may not take the reserved CPU
    control.step()
    assert control.store.get("blind").state == JobState.QUEUED
    _submit(control, "short", workers=1, runtime="5m")  # ends by 1300, before big's start at 1600
    control.step()
    assert control.store.get("short").state == JobState.STARTING
    assert control.store.get("big").state == JobState.QUEUED


def test_runtimes_from_history_are_read_once_per_ttl_and_follow_the_plan(control):
    _running(control, "digits", workers=2)
    control.clock.now += 120
    control.jobs.end(control.store.get("digits").ray_submission_id)
    control.step()
    control.runtimes._read_at = None  # as if the TTL ran out
    _submit(control, "again", workers=2)
    row = control.store.get("again")
    assert control.runtimes.of([row])["again"].seconds is None  # another name: no history
    again = _job("digits", workers=2)
    control.submit({"job": "digits-2", "spec": again, "request": {"runtime_env": {"env_vars": {}}}, "secrets": None})
    assert control.runtimes.of([control.store.get("digits-2")])["digits-2"].seconds == 120.0


@pytest.mark.parametrize("state,estimate,both,shown", [
    ("QUEUED", {"start_in_s": 540.0, "end_in_s": 840.0}, False, "starts in 9m00s"),
    ("QUEUED", {"start_in_s": 540.0, "end_in_s": 840.0}, True, "starts in 9m00s, ends in 14m00s"),
    ("QUEUED", {"start_in_s": 0.0, "end_in_s": None}, True, "starts now"),
    ("QUEUED", {"start_in_s": None, "end_in_s": None}, True, "-"),
    ("RUNNING", {"start_in_s": 0.0, "end_in_s": 4000.0}, False, "ends in 1h06m"),
    ("RUNNING", None, False, "-"),
    ("SUCCEEDED", {"start_in_s": None, "end_in_s": None}, False, ""),
])
def test_eta_text(state, estimate, both, shown):
    from orchestrator.cli.render import eta_text

    assert eta_text(estimate, state, both) == shown


def test_the_jobs_table_has_an_eta_column_and_the_status_panel_an_eta_row():
    from rich.console import Console

    from orchestrator.cli import render
    from tests.unit.test_user_text import _view

    view = _view(state="QUEUED", estimate={"runtime_s": 300.0, "basis": "hint", "start_in_s": 540.0,
                                           "end_in_s": 840.0})
    console = Console(width=200, record=True)
    console.print(render.jobs_table([view]))
    console.print(render.status_panel(view))
    text = console.export_text()
    assert "eta" in text.splitlines()[1] and "starts in 9m00s" in text
    assert "starts in 9m00s, ends in 14m00s" in text


# ---- hardware by expected finish, live: runtimes per GPU type from the job's history ----------

def _gpu_spec(name: str, accelerator) -> JobSpec:
    return JobSpec.model_validate({"name": name, "entrypoint": "train.py:loop", "working_dir": ".",
                                   "resources": {"workers": 1, "cpus": 1, "memory": "1GiB", "accelerator": accelerator},
                                   "precision": "fp32"})


V100_HOUR = [estimate.PastRun("train", "V100:1", 1, 3600.0, "fp32")]
A100_OVER_V100 = 19.5 / 15.7  # the catalog's fp32 peaks: how much faster an A100 is here


@pytest.mark.parametrize("accelerator,types,expected", [
    ({"any_of": ["A100:1", "V100:1"]}, (), {"A100": 3600 / A100_OVER_V100, "V100": 3600.0}),
    ("GPU:1", ("A100", "V100"), {"A100": 3600 / A100_OVER_V100, "V100": 3600.0}),
    ("GPU:1", ("V100",), None),  # one type: nothing to choose
    (["A100:1", "V100:1"], (), None),  # an ordered list keeps the user's order
    ("A100:1", (), None),  # one type named
    ({"any_of": ["A100:1", "CPU"]}, (), None),  # CPU has no GPU peak: not weighed
    ({"any_of": ["A100:1", "TPU-v4-8"]}, (), None),  # a TPU slice is not weighed against a GPU
])
def test_runtime_by_type_scales_the_jobs_history_by_peak_throughput(accelerator, types, expected):
    found = estimate.by_type(_gpu_spec("train", accelerator), V100_HOUR, types)
    assert found == (None if expected is None else pytest.approx(expected))


def test_runtime_by_type_needs_history_a_hint_is_the_same_everywhere():
    spec = _gpu_spec("train", {"any_of": ["A100:1", "V100:1"]})
    assert estimate.by_type(spec, [], ()) is None
    assert estimate.by_type(spec, [estimate.PastRun("other", "V100:1", 1, 3600.0, "fp32")], ()) is None


@pytest.fixture
def gpus(tmp_path):
    """A cluster of one A100 node and one V100 node, and a history: `train` ran 1 h on a V100."""
    from orchestrator.control.store import Store
    from orchestrator.load.cluster import ClusterFile, NodeEntry, snapshot_from_cluster
    from tests.unit.test_control import Clock, FakeJobs

    cluster = snapshot_from_cluster(ClusterFile(name="gpus", nodes=[
        NodeEntry(name=f"{kind.lower()}-node", cpus=8, memory=64 * 2**30, accelerator=f"{kind}:1")
        for kind in ("A100", "V100")]))
    made = Control(Store(tmp_path / "control.db"), FakeJobs(), lambda: cluster, str(tmp_path / "storage"),
                   clock=Clock(), grace_s=60)
    _submit_gpu(made, "train-0", "V100:1")
    made.step()
    made.step()
    made.clock.now += 3600
    made.jobs.end(made.store.get("train-0").ray_submission_id)
    made.step()
    assert made.store.get("train-0").state == JobState.SUCCEEDED
    yield made
    made.store.close()


def _submit_gpu(control: Control, job: str, accelerator) -> None:
    spec = _gpu_spec("train", accelerator).model_dump(mode="json")
    control.submit({"job": job, "spec": spec, "request": {"runtime_env": {"env_vars": {}}}, "secrets": None})


def test_plan_and_the_live_queue_choose_the_gpu_type_expected_to_finish_first(gpus):
    either = {"any_of": ["V100:1", "A100:1"]}
    planned = gpus.plan(_gpu_spec("train", either).model_dump(mode="json"), eta=True)
    assert planned["accelerator"] == "A100:1", planned
    assert "by expected finish: A100:1 ends in 48m" in planned["why"] and "V100:1 would end in 60m" in planned["why"]
    assert planned["estimate"]["end_in_s"] == pytest.approx(3600 * 15.7 / 19.5, abs=1)
    blind = gpus.plan(_gpu_spec("fresh", either).model_dump(mode="json"), eta=True)
    assert blind["accelerator"] == "V100:1" and "expected finish" not in blind["why"]  # no history: the cheapest
    _submit_gpu(gpus, "train-1", either)
    gpus.runtimes._read_at = None  # the history is read again (every 10 s)
    gpus.step()
    assert gpus.store.get("train-1").plan.record["accelerator"] == "A100:1"
