"""Runtime estimates as tables: each basis in its order of trust, scaling, the median of the
last few runs, and where the estimate of a stored job comes from (core/estimate.py)."""

from __future__ import annotations

import pytest

from orchestrator.adapters.durations import estimates, past_runs
from orchestrator.control.store import JobRow
from orchestrator.core.estimate import LAST_RUNS, Estimate, PastRun, Target, estimate, estimate_json, median, target_of
from orchestrator.core.launch import PlanRecord
from orchestrator.core.lifecycle import JobState
from orchestrator.core.spec import JobSpec

A100, V100 = 312.0, 125.0  # the catalog's peak bf16 TFLOP/s


def _run(runtime_s: float, accelerator: str = "A100:1", workers: int = 2, name: str = "train",
         precision: str = "bf16") -> PastRun:
    return PastRun(name, accelerator, workers, runtime_s, precision)


def _job(accelerator: str = "A100:1", workers: int = 2, **fields) -> Target:
    return Target(fields.pop("name", "train"), accelerator, workers, fields.pop("precision", "bf16"), **fields)


@pytest.mark.parametrize("job, runs, expected", [
    # the job's own history: same name, accelerator and workers; the median of its runs
    (_job(), [_run(100), _run(300), _run(200)], Estimate(200, "history: 3 runs on A100:1 x2")),
    (_job(), [_run(100), _run(300)], Estimate(200, "history: 2 runs on A100:1 x2")),
    (_job(), [_run(100)], Estimate(100, "history: 1 run on A100:1 x2")),
    (_job("a100:1"), [_run(100)], Estimate(100, "history: 1 run on A100:1 x2")),  # as the catalog spells it
    (_job(hint_s=50, limit_s=500), [_run(100)], Estimate(100, "history: 1 run on A100:1 x2")),  # trusted first
    # another name's runs are not this job's history
    (_job(), [_run(100, name="other")], None),
    # another accelerator: scaled by peak throughput (a V100 run takes 312/125 as long as on an A100)
    (_job("V100:1", precision="fp16"), [_run(125)], Estimate(312, "history: 1 run on A100:1 x2, scaled")),
    (_job(), [_run(312, "V100:1", precision="fp16")], Estimate(125, "history: 1 run on V100:1 x2, scaled")),
    # fp32 runs compare fp32 peaks (A100 19.5, V100 15.7 TFLOP/s)
    (_job("V100:1", precision="fp32"), [_run(157, precision="fp32")],
     Estimate(195, "history: 1 run on A100:1 x2, scaled")),
    # another worker count: data-parallel work scales inversely with the workers
    (_job(workers=4), [_run(100, workers=2)], Estimate(50, "history: 1 run on A100:1 x2, scaled")),
    (_job(workers=1), [_run(100, "A100:2", workers=2)], Estimate(400, "history: 1 run on A100:2 x2, scaled")),
    (_job(workers=4, data_parallel=False), [_run(100, workers=2)], Estimate(100, "history: 1 run on A100:1 x2, scaled")),
    (_job("CPU", workers=4), [_run(100, "CPU", workers=2, precision="fp32")],
     Estimate(50, "history: 1 run on CPU x2, scaled")),
    # no speed ratio between a CPU and a GPU run, nor for a generic GPU:1: the spec's figures then
    (_job("CPU", hint_s=60), [_run(100)], Estimate(60, "hint")),
    (_job("GPU:1", limit_s=7200), [_run(100)], Estimate(7200, "time limit (upper bound)")),
    (_job(hint_s=60, limit_s=7200), [], Estimate(60, "hint")),
    (_job(limit_s=7200), [], Estimate(7200, "time limit (upper bound)")),
    (_job(), [], None),
])
def test_estimates_in_their_order_of_trust(job, runs, expected):
    assert estimate(job, runs) == expected


def test_scaled_history_reads_the_configuration_run_most_recently():
    runs = [_run(312, "V100:1", workers=2), _run(312, "V100:1", workers=4), _run(250, "V100:1", workers=4)]
    found = estimate(_job(workers=4), runs)
    assert found.basis == "history: 2 runs on V100:1 x4, scaled"
    assert found.runtime_s == pytest.approx(median([312, 250]) * V100 / A100)


def test_only_the_last_few_runs_count():
    old = [_run(1000)] * 10  # the job was slow before its code changed
    recent = [_run(t) for t in (100, 120, 110, 130, 90)]
    found = estimate(_job(), old + recent)
    assert LAST_RUNS == 5 and found == Estimate(110, "history: 5 runs on A100:1 x2")
    assert estimate(_job(), recent + old).runtime_s == 1000  # oldest first: the slow runs are the last


def test_median():
    assert (median([3]), median([1, 3]), median([5, 1, 3]), median([4, 1, 3, 2])) == (3, 2, 3, 2.5)


def _spec(accelerator="A100:1", workers=2, **extra) -> JobSpec:
    return JobSpec.model_validate({"name": "train", "entrypoint": "t.py:f",
                                   "resources": {"workers": workers, "accelerator": accelerator}, **extra})


def test_the_target_is_the_plan_else_the_first_option_at_the_specs_workers():
    spec = _spec(["A100:1", "V100:1"], 4, hints={"runtime": "45m"}, schedule={"time_limit": "2h"})
    assert target_of(spec, None) == Target("train", "A100:1", 4, "bf16", True, 2700.0, 7200.0)
    assert target_of(spec, {"accelerator": "V100:1", "workers": 2}) == Target("train", "V100:1", 2, "fp32", True,
                                                                             2700.0, 7200.0)
    assert target_of(spec, {"accelerator": None, "workers": 0}).accelerator == "A100:1"  # infeasible
    sweep = _spec(config={"lr": 0.1}, sweep={"metric": "loss", "mode": "min",
                                             "space": {"lr": {"uniform": [0.01, 0.1]}}})
    assert not target_of(sweep, None).data_parallel


def test_estimate_json_has_null_start_and_end_until_the_forward_simulation():
    assert estimate_json(_spec(hints={"runtime": "45m"}), None, []) == {
        "runtime_s": 2700.0, "basis": "hint", "start_in_s": None, "end_in_s": None}
    assert estimate_json(_spec(), None, []) == {"runtime_s": None, "basis": None, "start_in_s": None,
                                                "end_in_s": None}


def _row(seq: int, state: str, history: list[dict], plan: dict | None, ended_at: float | None,
         name: str = "train") -> JobRow:
    spec = _spec().model_dump(mode="json") | {"name": name}
    return JobRow(seq, f"{name}-{seq}", name, JobState(state), 100, "default", False, JobSpec.model_validate(spec), {},
                  PlanRecord.read(plan) if plan else None, None, 1, None, None, history, 0.0, None, ended_at, 0.0,
                  spec)


def test_a_stored_jobs_past_runs_are_its_running_time_over_attempts():
    plan = {"accelerator": "A100:1", "workers": 2}
    resumed = [{"state": "RUNNING", "at": 10.0}, {"state": "PREEMPTED", "at": 40.0}, {"state": "QUEUED", "at": 40.0},
               {"state": "STARTING", "at": 90.0}, {"state": "RUNNING", "at": 95.0}, {"state": "SUCCEEDED", "at": 165.0}]
    rows = [_row(2, "SUCCEEDED", resumed, plan, 165.0),
            _row(1, "SUCCEEDED", [{"state": "RUNNING", "at": 0.0}, {"state": "SUCCEEDED", "at": 80.0}], plan, 80.0),
            _row(3, "FAILED", [{"state": "RUNNING", "at": 0.0}, {"state": "FAILED", "at": 5.0}], plan, 5.0),
            _row(4, "SUCCEEDED", [{"state": "RUNNING", "at": 0.0}, {"state": "SUCCEEDED", "at": 9.0}], plan, 9.0,
                 name="other")]
    runs = past_runs(rows)
    assert [run.runtime_s for run in runs["train"]] == [80.0, 100.0]  # in the order they ended; FAILED left out
    queued = _row(5, "QUEUED", [], None, None)
    alike = _row(6, "QUEUED", [], None, None)
    assert estimates([queued, alike], runs) == {
        row.id: {"runtime_s": 90.0, "basis": "history: 2 runs on A100:1 x2", "start_in_s": None, "end_in_s": None}
        for row in (queued, alike)}
