"""Hardware by expected finish (core/policy/finish.py) on hand-worked cases: one GPU each of
V100 ($2.48/h), A100 ($2.93/h) and H100 ($11.06/h); a job that may use any of them runs 50m on
V100, 30m on A100 and 10m on H100 unless a case says otherwise."""

from __future__ import annotations

import pytest

from orchestrator.core import allocator
from orchestrator.core.allocator import plan
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.finish import flexible
from orchestrator.core.policy.state import QueuedJob, QueueState
from orchestrator.core.simulate import simulate
from orchestrator.load.trace import trace_job
from tests.unit.test_queue import cluster, spec

NODES = [{"name": name, "cpus": 8, "memory": "64GiB", "accelerator": f"{acc}:1"}
         for name, acc in (("v", "V100"), ("a", "A100"), ("h", "H100"))]
RUNTIMES = {"V100": 3000.0, "A100": 1800.0, "H100": 600.0}
ANY = {"any_of": ["V100:1", "A100:1", "H100:1"]}


def board(running: dict[str, tuple[str, float | None]], queued: list[tuple[str, object, dict | None]],
          now: float = 0.0, nodes: list[dict] = NODES) -> QueueState:
    """``running``: name -> (accelerator, estimate), started at 0; ``queued``: (name, accelerator,
    runtime per type or None: no estimate at all)."""
    state = QueueState(cluster(*nodes), now=now)
    for seq, (name, (acc, estimate)) in enumerate(running.items()):
        job = QueuedJob(name, spec(name, accelerator=acc, cpus=1), -100 + seq, estimate)
        state.enqueue(job)
        state.start(name, plan(job.spec, state.snapshot), 0.0)
    for seq, (name, acc, by) in enumerate(queued):
        state.enqueue(QueuedJob(name, spec(name, accelerator=acc, cpus=1), seq, None, None, by))
    return state


def admitted(state: QueueState) -> dict[str, str]:
    return {job: placed.accelerator for job, placed in decide(state).admit}


def test_alternatives_plan_each_type_once_placeable_or_queued():
    state = board({"r": ("H100:1", 200.0)}, [])
    job = spec("j", accelerator={"any_of": ["A100:1", "GPU:1", "TPU-v4:4"]}, cpus=1)
    plans = allocator.alternatives(job, state.snapshot)
    assert [(p.accelerator, p.status) for p in plans] == [("A100:1", "placeable"), ("V100:1", "placeable"),
                                                         ("H100:1", "queued")]
    assert plans[0].rejected == (("TPU-v4:4", "no node has TPU-v4"),)


def test_the_faster_type_free_now_wins_over_the_cheaper_one():
    decision = decide(board({}, [("j", ANY, RUNTIMES)]))
    assert [(job, placed.accelerator) for job, placed in decision.admit] == [("j", "H100:1")]
    assert decision.finish["j"].chosen.plan.accelerator == "H100:1"


def test_without_per_type_estimates_the_allocator_rule_stands():
    """any_of takes the cheapest placeable option, as before; nothing is weighed."""
    state = board({}, [("j", ANY, None)])
    decision = decide(state)
    assert [placed.accelerator for _, placed in decision.admit] == ["V100:1"]
    assert decision.finish == {}
    assert decision.admit[0][1] == plan(state.pending.get("j").spec, state.snapshot)


def test_equal_runtimes_on_every_type_leave_the_allocator_rule():
    assert admitted(board({}, [("j", ANY, dict.fromkeys(RUNTIMES, 600.0))])) == {"j": "V100:1"}


def test_an_ordered_list_keeps_the_users_order():
    ordered = ["V100:1", "A100:1", "H100:1"]
    assert admitted(board({}, [("j", ordered, RUNTIMES)])) == {"j": "V100:1"}
    assert not flexible(spec("j", accelerator=ordered)) and flexible(spec("j", accelerator="GPU:1"))


def test_gpu_n_and_auto_choose_by_expected_finish_too():
    assert admitted(board({}, [("j", "GPU:1", RUNTIMES)])) == {"j": "H100:1"}
    assert admitted(board({}, [("j", "auto", RUNTIMES)])) == {"j": "H100:1"}


@pytest.mark.parametrize(("h_ends", "expected"), [
    (200.0, None),  # H100 at 200 + 600 = 800 beats A100 now at 1800: hold out
    (1199.0, None),  # 1799 < 1800: still sooner
    (1200.0, "A100:1"),  # 1800 = 1800: an equal finish starts now
    (2500.0, "A100:1"),  # 3100 > 1800: take the slower type now
])
def test_holds_out_for_a_busy_faster_type_only_when_it_finishes_sooner(h_ends, expected):
    state = board({"r": ("H100:1", h_ends)}, [("j", ANY, RUNTIMES)])
    decision = decide(state)
    assert admitted(state) == ({"j": expected} if expected else {})
    if expected is None:
        choice = decision.finish["j"]
        assert choice.holds_out and choice.chosen.start == h_ends and choice.chosen.finish == h_ends + 600
        assert decision.waiting["j"].startswith(f"holds out for H100:1, expected to start in {h_ends / 60:.0f}m on h-0")


@pytest.mark.parametrize(("k_runs", "k_admitted"), [(3600.0, False), (150.0, True)])
def test_holding_out_reserves_the_faster_type(k_runs, k_admitted):
    """Two GPUs a node; r holds one H100 until 200, and j (two GPUs) holds out for both. A later
    one-GPU job k may take the free H100 only if it ends before j is expected to start (EASY)."""
    nodes = [{"name": name, "cpus": 8, "memory": "64GiB", "accelerator": f"{acc}:2"}
             for name, acc in (("v", "V100"), ("h", "H100"))]
    pair = {"any_of": ["V100:2", "H100:2"]}
    state = board({"r": ("H100:1", 200.0)}, [("j", pair, RUNTIMES), ("k", "H100:1", {"H100": k_runs})],
                  nodes=nodes)
    decision = decide(state)
    assert decision.finish["j"].holds_out
    assert [job for job, _ in decision.admit] == (["k"] if k_admitted else [])
    if not k_admitted:
        assert decision.waiting["k"].startswith("behind j, queued earlier")
        assert "h-0 are reserved for jobs ahead" in decision.waiting["k"]


def test_a_job_behind_one_that_holds_out_takes_the_free_slower_types():
    """Same queue, priority and resources: the first waits for the H100, the next two start now
    on A100 and V100 (each finishes sooner so than behind the first on H100)."""
    state = board({"r": ("H100:1", 200.0)}, [("j1", ANY, RUNTIMES), ("j2", ANY, RUNTIMES), ("j3", ANY, RUNTIMES)])
    assert admitted(state) == {"j2": "A100:1", "j3": "V100:1"}
    assert decide(state, explain=False).admit == decide(state).admit


def test_a_busy_type_whose_end_is_unknown_is_not_waited_for():
    state = board({"r": ("H100:1", None)}, [("j", ANY, RUNTIMES)])
    decision = decide(state)
    assert admitted(state) == {"j": "A100:1"}
    assert [other.plan.accelerator for other in decision.finish["j"].others] == ["V100:1"]


def test_an_unknown_runtime_on_a_type_leaves_the_allocator_rule():
    assert admitted(board({}, [("j", ANY, {"H100": 600.0, "A100": 1800.0})])) == {"j": "V100:1"}


def test_equal_finishes_go_to_the_lower_price():
    """A100 and H100 both end at 10m; V100 at 50m. Today's rule would take V100 (cheapest)."""
    state = board({}, [("j", ANY, {"V100": 3000.0, "A100": 600.0, "H100": 600.0})])
    decision = decide(state)
    assert admitted(state) == {"j": "A100:1"}
    assert "as soon as H100:1, at $2.93/h, the lowest price" in decision.admit[0][1].why


def test_the_why_names_the_choice_and_the_others_expected_finish():
    state = board({"r": ("H100:1", 1500.0)}, [("j", ANY, RUNTIMES)])
    placed = decide(state).admit[0][1]
    assert placed.accelerator == "A100:1"
    assert placed.why == ("by expected finish: A100:1 ends in 30m (starts now, runs 30m); "
                          "V100:1 would end in 50m (starts now, runs 50m), "
                          "H100:1 would end in 35m (starts in 25m, runs 10m)")
    assert allocator.to_json(placed)["why"] == placed.why


def test_the_simulator_holds_out_with_exact_estimates_and_not_without():
    """Two GPUs: r holds the H100 for 100 s; j (50m on V100, 10m on H100) arrives at once."""
    nodes = [NODES[0], NODES[2]]
    lines = [{"name": "r", "submit_s": 0, "runtime_s": 100, "resources": {"accelerator": "H100:1", "cpus": 1}},
             {"name": "j", "submit_s": 1, "runtime_s": 3000, "runtime_by_accelerator": {"H100": 600},
              "resources": {"accelerator": {"any_of": ["V100:1", "H100:1"]}, "cpus": 1}}]
    trace = [trace_job(line) for line in lines]
    told = simulate(cluster(*nodes), trace, estimates="exact")
    blind = simulate(cluster(*nodes), trace, estimates="none")
    # exact: j waits 99 s for the H100 and ends at 700; blind: it starts on the V100 and ends at 3001.
    assert told["makespan_s"] == 700 and blind["makespan_s"] == 3001
