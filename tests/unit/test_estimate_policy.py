"""Runtime estimates in the queue policy: EASY backfill by shadow time, the forecast of starts and
ends, and the simulator's trace fields (runtime_by_accelerator, estimate_s, time_limit_s),
--estimates modes and eta_error, on hand-worked timelines."""

from __future__ import annotations

import pytest

from orchestrator.core.allocator import plan
from orchestrator.core.errors import SpecError
from orchestrator.core.forecast import Forecast, forecast
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.state import QueuedJob, QueueState
from orchestrator.core.simulate import simulate
from orchestrator.load.trace import load_trace, trace_job
from tests.unit.test_queue import cluster, spec

GPU8 = {"name": "g", "cpus": 32, "memory": "256GiB", "accelerator": "A100:8"}
CPU4 = {"name": "c", "cpus": 4, "memory": "16GiB"}


def board(node: dict, running: list[tuple], queued: list[tuple], now: float) -> QueueState:
    """``running``: (name, resources, started, estimate); ``queued``: (name, resources, estimate, limit)."""
    state = QueueState(cluster(node), now=now)
    for seq, (name, resources, started, estimate) in enumerate(running):
        job = QueuedJob(name, spec(name, **resources), -len(running) + seq, estimate)
        state.enqueue(job)
        state.start(name, plan(job.spec, state.snapshot), started)
    for seq, (name, resources, estimate, limit) in enumerate(queued):
        state.enqueue(QueuedJob(name, spec(name, **resources), seq, estimate, limit))
    return state


GPUS = lambda n: {"accelerator": f"A100:{n}", "cpus": n}  # noqa: E731

# A holds 4 of the 8 GPUs and is expected to end at 100; W, first in the queue, needs all 8 (its
# reservation's shadow time is 100); B needs 2 and comes after W.
BACKFILL = [
    # (case, A's estimate, now, B's estimate, B's limit, B admitted)
    ("ends before the shadow", 100, 0, 50, None, True),
    ("ends exactly at the shadow", 100, 0, 100, None, True),
    ("ends after the shadow", 100, 0, 150, None, False),
    ("no estimate: the conservative rule", 100, 0, None, None, False),
    ("a time limit alone bounds it", 100, 0, None, 80, True),
    ("the limit bounds a long estimate", 100, 0, 150, 90, True),
    ("A has no estimate: shadow unknown", None, 0, 10, None, False),
    ("A overran its estimate: W starts any moment", 100, 120, 10, None, False),
    ("later, less time is left before the shadow", 100, 60, 50, None, False),
]


@pytest.mark.parametrize(("case", "a_estimate", "now", "estimate", "limit", "admitted"), BACKFILL,
                         ids=[row[0] for row in BACKFILL])
def test_backfill_onto_a_reservation_only_when_it_ends_by_the_shadow_time(case, a_estimate, now, estimate,
                                                                          limit, admitted):
    state = board(GPU8, [("a", GPUS(4), 0.0, a_estimate)],
                  [("w", GPUS(8), 500.0, None), ("b", GPUS(2), estimate, limit)], now)
    decision = decide(state)
    assert [job for job, _ in decision.admit] == (["b"] if admitted else [])
    assert decision.backfilled == ({"b": 100.0} if admitted and now < 100 else {})
    if not admitted:
        assert "reserved for jobs ahead" in decision.waiting["b"]
    assert "waits for 8 x A100" in decision.waiting["w"]


def test_each_job_of_a_group_is_considered_for_backfill():
    """Same queue, priority and resources: the first is too long, the second short enough."""
    state = board(GPU8, [("a", GPUS(4), 0.0, 100)],
                  [("w", GPUS(8), 50, None), ("long", GPUS(2), 300, None), ("short", GPUS(2), 40, None)], 0)
    fast, explained = decide(state, explain=False), decide(state)
    assert [(job, placed.job) for job, placed in fast.admit] == [("short", "short")]
    assert fast.admit == explained.admit
    assert "long" in explained.waiting and "short" not in explained.waiting


# ---- the simulator: promises kept, overruns ------------------------------------------------


def starts(lines: list[dict], estimates: str) -> dict[str, float]:
    seen: dict[str, float] = {}

    def record(now, state):
        for job in state.running.values():
            seen.setdefault(job.id, job.started)

    simulate(cluster(GPU8), [trace_job(line) for line in lines], "orch", record, estimates)
    return seen


def gpu_line(name: str, submit: float, runtime: float, gpus: int, **fields) -> dict:
    return {"name": name, "submit_s": submit, "runtime_s": runtime,
            "resources": {"cpus": gpus, "memory": "1GiB", "accelerator": f"A100:{gpus}"}, **fields}


def test_a_backfilled_job_never_delays_the_reserved_job_when_estimates_are_right():
    lines = [gpu_line("a", 0, 100, 4), gpu_line("w", 1, 50, 8), gpu_line("b", 2, 50, 2)]
    blind, exact = starts(lines, "none"), starts(lines, "exact")
    assert blind == {"a": 0, "w": 100, "b": 150}  # today's rule: b waits behind w's reservation
    assert exact == {"a": 0, "w": 100, "b": 2}  # b ends at 52, before w's start at 100


def test_with_an_overrun_the_reserved_job_still_starts_next():
    """b says 50 s and runs 150: it is not stopped, w starts when it ends, and c (which says
    it ends in 10 s) does not slip in before w while b overruns."""
    lines = [gpu_line("a", 0, 100, 4, estimate_s=100), gpu_line("w", 1, 50, 8, estimate_s=50),
             gpu_line("b", 2, 150, 2, estimate_s=50), gpu_line("c", 110, 10, 2, estimate_s=10)]
    seen = starts(lines, "trace")
    assert seen == {"a": 0, "b": 2, "w": 152, "c": 202}


# ---- the forecast ---------------------------------------------------------------------------

CPUS = lambda n: {"cpus": n}  # noqa: E731


def test_forecast_of_a_hand_worked_timeline():
    """r holds the 4 CPUs until 100; q1 then runs 50; q2 and q3 share the node from 150; q3 has
    no estimate, so q4 (which needs the whole node) waits for ever as far as anyone knows."""
    state = board(CPU4, [("r", CPUS(4), 0.0, 100)],
                  [("q1", CPUS(4), 50, None), ("q2", CPUS(2), 30, None), ("q3", CPUS(2), None, None),
                   ("q4", CPUS(4), 10, None)], now=10)
    before = (len(state.pending), dict(state.running), state.snapshot)
    assert forecast(state) == {"r": Forecast(0, 100), "q1": Forecast(100, 150), "q2": Forecast(150, 180),
                               "q3": Forecast(150, None), "q4": Forecast(None, None)}
    assert (len(state.pending), dict(state.running), state.snapshot) == before  # the state is left alone
    assert Forecast(150, None).to_json(10) == {"start_in_s": 140, "end_in_s": None}


FORECASTS = [
    # (case, r's started and estimate, now, q's estimate, q's forecast)
    ("starts when r ends", (0.0, 100), 10, 50, Forecast(100, 150)),
    ("r overran: it ends any moment", (0.0, 100), 130, 50, Forecast(130, 180)),
    ("r has no estimate: unknown", (0.0, None), 10, 50, Forecast(None, None)),
    ("q has no estimate: it starts, never known to end", (0.0, 100), 10, None, Forecast(100, None)),
]


@pytest.mark.parametrize(("case", "running", "now", "estimate", "expected"), FORECASTS,
                         ids=[row[0] for row in FORECASTS])
def test_forecast_cases(case, running, now, estimate, expected):
    state = board(CPU4, [("r", CPUS(4), *running)], [("q", CPUS(4), estimate, None)], now)
    assert forecast(state)["q"] == expected


def test_forecast_until_stops_once_the_jobs_asked_about_start():
    state = board(CPU4, [("r", CPUS(4), 0.0, 100)], [("q1", CPUS(4), 50, None), ("q2", CPUS(4), 50, None)], 0)
    ahead = forecast(state, until=["q1"])
    assert ahead["q1"] == Forecast(100, 150) and ahead["q2"] == Forecast(None, None)


# ---- traces: runtime_by_accelerator, estimate_s, time_limit_s, --estimates, eta_error ------


def cpu_line(name: str, submit: float, runtime: float, cpus: int = 4, **fields) -> dict:
    return {"name": name, "submit_s": submit, "runtime_s": runtime,
            "resources": {"cpus": cpus, "memory": "1GiB"}, **fields}


def run(lines: list[dict], estimates: str = "trace", node: dict = CPU4) -> dict:
    return simulate(cluster(node), [trace_job(line) for line in lines], "orch", estimates=estimates)


def test_trace_lines_take_the_new_fields(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"name": "j", "submit_s": 0, "runtime_s": 60, "runtime_by_accelerator": {"v100": 30, '
                    '"TPU-v4": 20}, "estimate_s": 90, "time_limit_s": 120}\n')
    (job,) = load_trace(path)
    assert job.runtime_by_accelerator == {"V100": 30, "TPU-v4": 20}
    assert (job.estimate_s, job.time_limit_s) == (90, 120)
    assert (job.runtime_on("V100:2"), job.runtime_on("TPU-v4-16"), job.runtime_on("A100:1")) == (30, 20, 60)
    path.write_text('{"name": "j", "submit_s": 0, "runtime_s": 60, "runtime_by_accelerator": {"V1OO": 30}}\n')
    with pytest.raises(SpecError, match=r":1: runtime_by_accelerator.*V100"):
        load_trace(path)


def test_runtime_by_accelerator_is_the_runtime_on_the_planned_type():
    t4 = {"name": "t4", "cpus": 8, "memory": "32GiB", "accelerator": "T4:1"}
    line = {"name": "j", "submit_s": 0, "runtime_s": 10, "runtime_by_accelerator": {"T4": 30},
            "resources": {"cpus": 1, "memory": "1GiB", "accelerator": "GPU:1"}}
    assert run([line], node=t4)["makespan_s"] == 30


def test_a_time_limit_stops_the_job_failed():
    report = run([cpu_line("a", 0, 100, time_limit_s=40), cpu_line("b", 0, 10)], estimates="none")
    assert report["timed_out"] == 1 and report["makespan_s"] == 50  # a stops at 40, then b runs 10


@pytest.mark.parametrize(("estimates", "b_start"), [("none", 150), ("trace", 2), ("exact", 2)])
def test_estimates_modes(estimates, b_start):
    """b says (estimate_s) and runs 50 s, ending before w's reservation at 100: only a policy told
    runtimes backfills it."""
    lines = [gpu_line("a", 0, 100, 4, estimate_s=100), gpu_line("w", 1, 50, 8, estimate_s=50),
             gpu_line("b", 2, 50, 2, estimate_s=50)]
    assert starts(lines, estimates)["b"] == b_start


ETA = [
    # (case, a's estimate_s, estimates mode, eta_error)
    ("exact: b's predicted start is right", None, "exact", {"jobs": 2, "median_abs_s": 0, "p90_abs_s": 0, "started_at_submit": 1}),
    ("a said 60 and ran 100: b is 40 s late", 60, "trace", {"jobs": 2, "median_abs_s": 20, "p90_abs_s": 40}),
    ("told nothing: nothing predicted", None, "none", {"jobs": 0, "median_abs_s": None, "p90_abs_s": None}),
]


@pytest.mark.parametrize(("case", "estimate", "estimates", "expected"), ETA, ids=[row[0] for row in ETA])
def test_eta_error_compares_the_start_forecast_at_submit_with_the_actual_one(case, estimate, estimates, expected):
    told = {"estimate_s": estimate} if estimate else {}
    report = run([cpu_line("a", 0, 100, **told), cpu_line("b", 10, 50, estimate_s=50)], estimates)
    assert {key: report["eta_error"][key] for key in expected} == expected
