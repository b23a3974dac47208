"""`orch simulate` as a library: trace loading, the simulated clock, preemption, borrow limits, the report."""

from __future__ import annotations

import json
import random

import pytest

from orchestrator.core import replay as replay_module
from orchestrator.core.errors import SpecError
from orchestrator.core.policy import decide as queue_module
from orchestrator.core.simulate import check_invariants, percentile, simulate
from orchestrator.load.cluster import load_cluster_file, snapshot_from_cluster
from orchestrator.load.trace import load_trace, trace_job
from tests.conftest import REPO
from tests.unit.test_queue import LAB, cluster

CPU4 = {"name": "cpu", "cpus": 4, "memory": "16GiB"}


def job(name: str, submit: float, runtime: float, cpus: float = 1, **fields) -> dict:
    return {"name": name, "class": fields.pop("cls", "small"), "submit_s": submit, "runtime_s": runtime,
            "resources": {"cpus": cpus, "memory": "1GiB", **fields.pop("resources", {})}, **fields}


def run(snapshot, lines: list[dict], policy: str = "orch", on_step=None) -> dict:
    return simulate(snapshot, [trace_job(line) for line in lines], policy, on_step)


# ---- traces ------------------------------------------------------------------------------


def test_load_trace_builds_specs(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(job("j1", 0.1, 0.2, priority=50, queue="cq-1", preemptible=True)) + "\n\n"
                    + json.dumps({"name": "j2", "submit_s": 1, "runtime_s": 2}) + "\n")
    first, second = load_trace(path)
    assert (first.name, first.job_class, first.submit_s, first.runtime_s) == ("j1", "small", 0.1, 0.2)
    assert first.spec.schedule.queue == "cq-1" and first.spec.schedule.preemptible
    assert second.spec.schedule.priority == 100  # the spec's default
    assert second.job_class == "default"


@pytest.mark.parametrize(("text", "message"), [
    ('{"name": "j1", "submit_s": 0, "runtime_s": 1}\n{"name": "j2", "submit_s": 0', ":2: not valid JSON"),
    ('{"name": "j1", "submit_s": 0, "runtime_s": 1, "runtme": 2}', ":1: runtme: Extra inputs are not permitted"),
    ('{"name": "j1", "submit_s": 0, "runtime_s": 0}', ":1: runtime_s: Input should be greater than 0"),
    ('{"name": "j1", "submit_s": 0, "runtime_s": 1, "resources": {"accelerator": "Z300:1"}}',
     ":1: resources.accelerator"),
    ('{"name": "j1", "submit_s": 0, "runtime_s": 1}\n{"name": "j1", "submit_s": 0, "runtime_s": 1}',
     ":2: name 'j1' is used on line 1 already"),
])
def test_bad_lines_name_their_number(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        load_trace(path)


def test_the_example_trace_loads():
    assert len(load_trace(REPO / "jobs" / "traces" / "example.jsonl")) == 40


# ---- the report ----------------------------------------------------------------------------


def test_report_has_specs_fields_and_counts():
    report = run(cluster(CPU4), [job("a", 0, 10, cpus=4), job("b", 0, 10, cpus=4, cls="big"), job("c", 5, 5)])
    assert set(report) >= {"jobs", "makespan_s", "utilization", "mean_wait_s", "mean_jct_s", "by_class",
                           "by_queue", "preemptions", "wall_s"}
    assert report["jobs"] == 3 and report["makespan_s"] == 25
    assert report["mean_wait_s"] == pytest.approx((0 + 10 + 15) / 3, abs=1e-3)
    assert report["mean_jct_s"] == pytest.approx((10 + 20 + 20) / 3, abs=1e-3)
    assert report["by_class"]["big"] == {"jobs": 1, "mean_wait_s": 10, "p99_wait_s": 10}
    assert report["utilization"] == pytest.approx((40 + 40 + 5) / (4 * 25))


def test_utilization_averages_resource_kinds():
    snapshot = cluster(CPU4, {"name": "t4", "cpus": 4, "memory": "16GiB", "accelerator": "T4:1"})
    report = run(snapshot, [job("gpu", 0, 10, resources={"accelerator": "T4:1"}), job("cpu", 0, 10, cpus=4)])
    assert report["utilization_by_resource"] == {"CPU": pytest.approx(5 / 8), "GPU": 1.0}
    assert report["utilization"] == pytest.approx((5 / 8 + 1) / 2, abs=1e-4)


def test_jobs_that_never_fit_are_rejected():
    report = run(cluster(CPU4), [job("ok", 0, 1), job("huge", 0, 1, cpus=64)])
    assert (report["jobs"], report["rejected"]) == (1, 1)


def test_percentile_is_nearest_rank():
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert percentile([], 0.99) == 0.0


# ---- policies in simulated time -----------------------------------------------------------------


def test_a_stream_of_small_jobs_does_not_starve_a_big_one():
    snapshot = cluster({"name": "cpu", "count": 2, "cpus": 4, "memory": "16GiB"})
    stream = [job(f"s{i}", i * 0.5, 3, cpus=1) for i in range(400)]  # keeps the cluster busy without a queue
    big = job("big", 2, 10, cpus=4, resources={"workers": 2}, cls="big")
    report = run(snapshot, [*stream, big])
    # The big job waits at most for the small jobs already running on its reserved nodes.
    assert report["by_class"]["big"]["mean_wait_s"] <= 3


def test_preempted_job_loses_work_since_its_start():
    low = job("low", 0, 100, cpus=4, priority=10, preemptible=True)
    high = job("high", 50, 10, cpus=4, priority=500, cls="high")
    report = run(cluster(CPU4), [low, high])
    assert report["preemptions"] == 1 and report["by_class"]["high"]["mean_wait_s"] == 0
    assert report["makespan_s"] == 160  # low restarts at 60 and runs its full 100 s


def test_preempted_job_resumes_from_its_last_checkpoint():
    low = job("low", 0, 100, cpus=4, priority=10, preemptible=True, checkpoint_s=30)
    report = run(cluster(CPU4), [low, job("high", 50, 10, cpus=4, priority=500)])
    assert report["makespan_s"] == 130  # 30 s were saved: 70 s left at 60


def test_reclaim_in_simulated_time():
    snapshot = cluster({"name": "a100", "count": 2, "cpus": 16, "memory": "64GiB", "accelerator": "A100:4"},
                       queues=LAB)
    gpu4 = {"accelerator": "A100:4"}
    lines = [job("a1", 0, 100, queue="a", resources=gpu4), job("a2", 0, 100, queue="a", preemptible=True,
                                                               resources=gpu4),
             job("b1", 10, 10, queue="b", priority=1, resources=gpu4, cls="owner")]
    report = run(snapshot, lines)
    assert report["preemptions"] == 1 and report["by_class"]["owner"]["mean_wait_s"] == 0
    assert report["by_queue"]["a"]["max_borrowed"]["GPU"] == 4


def test_borrow_limits_hold_at_every_instant():
    snapshot = snapshot_from_cluster(load_cluster_file(REPO / "cluster" / "cohorts.yaml"))
    trace = load_trace(REPO / "jobs" / "traces" / "example.jsonl")
    seen = []

    def check(now, state):
        problems = check_invariants(state)
        assert not problems, f"t={now}: {problems}"
        seen.append(now)

    report = simulate(snapshot, trace, on_step=check)
    assert report["jobs"] == len(trace) and len(seen) > len(trace)
    for name, queue in snapshot.queues.items():
        for key, peak in report["by_queue"].get(name, {}).get("max_borrowed", {}).items():
            assert peak <= (queue.borrow or {}).get(key, 0.0)


def test_fifo_blocks_behind_the_head_where_orch_backfills():
    snapshot = cluster({"name": "cpu", "count": 2, "cpus": 4, "memory": "16GiB"})
    lines = [job("long", 0, 100, cpus=3, cls="long"), job("long-2", 0, 100, cpus=2, cls="long"),  # 1, 2 free
             job("big", 1, 10, cpus=4, cls="big"), *(job(f"s{i}", 2 + i, 5, cpus=1) for i in range(10))]
    orch, fifo = run(snapshot, lines), run(snapshot, lines, "fifo")
    assert fifo["by_class"]["small"]["mean_wait_s"] >= 90  # all behind big, which waits for the long jobs
    # orch reserves cpu-1 for big and runs the small jobs one by one on cpu-0's spare CPU.
    assert orch["by_class"]["big"] == fifo["by_class"]["big"]
    assert orch["by_class"]["small"]["mean_wait_s"] < 25


def test_a_non_preemptible_borrower_keeps_running_and_the_owner_waits():
    snapshot = cluster({"name": "a100", "count": 2, "cpus": 16, "memory": "64GiB", "accelerator": "A100:4"},
                       queues=LAB)
    gpu4 = {"accelerator": "A100:4"}
    lines = [job("a1", 0, 100, queue="a", resources=gpu4), job("a2", 0, 100, queue="a", preemptible=False,
                                                               resources=gpu4),
             job("b1", 10, 10, queue="b", priority=900, resources=gpu4, cls="owner")]
    report = run(snapshot, lines)
    assert report["by_queue"]["a"]["max_borrowed"]["GPU"] == 4  # a borrowed b's idle quota
    assert report["preemptions"] == 0
    assert report["by_class"]["owner"]["mean_wait_s"] == 90  # until a borrower ends


def scale_trace(jobs: int, seed: int) -> list[dict]:
    """A small overloaded trace in the shape of benchmarks/simulate_scale.py: CPU, GPU and TPU jobs
    on six queues in two cohorts, mixed priorities, some preemptible."""
    rng = random.Random(seed)
    shapes = [("cpu-1", {"cpus": 1}), ("cpu-5", {"cpus": 5}), ("cpu-20", {"cpus": 20}),
              ("gpu", {"cpus": 8, "accelerator": "GPU:1"}), ("tpu", {"cpus": 32, "accelerator": "TPU-v4:4"})]
    lines = []
    for i in range(jobs):
        name, resources = rng.choices(shapes, (0.5, 0.25, 0.12, 0.1, 0.03))[0]
        preemptible = rng.random() < 0.4
        lines.append(job(f"j{i}", round(i * 1.5, 1), rng.choice((60, 200, 600)), cls=name,
                         queue=f"q{rng.randrange(6)}", priority=rng.choice((50, 100, 500)), preemptible=preemptible,
                         resources=resources, **({"checkpoint_s": 60} if preemptible else {})))
    return lines


SCALE_NODES = ({"name": "cpu", "count": 4, "cpus": 32, "memory": "128GiB"},
               {"name": "a100", "count": 1, "cpus": 32, "memory": "256GiB", "accelerator": "A100:4"},
               {"name": "v4", "count": 1, "cpus": 32, "memory": "128GiB", "accelerator": "TPU-v4:4"})
SCALE_QUEUES = {f"q{i}": {"quota": {"CPU": 32}, "cohort": f"c{i // 3}", "borrow": {"CPU": 64}} for i in range(6)}


def test_borrow_limits_hold_at_every_instant_of_an_overloaded_trace(monkeypatch):
    """Borrowing and reclaim all through a busy trace: limits hold at every instant, and the simulator's
    fast decisions (no reasons) are the ones the control plane's explained decisions would be."""
    snapshot = cluster(*SCALE_NODES, queues=SCALE_QUEUES)
    compared = []

    def both(state, policy, explain=True):
        fast = queue_module.decide(state, policy, explain=False)
        explained = queue_module.decide(state, policy, explain=True)
        assert [j for j, _ in fast.admit] == [j for j, _ in explained.admit]
        assert fast.preempt == explained.preempt
        compared.append(bool(fast.admit or fast.preempt))
        return fast

    def check(now, state):
        problems = check_invariants(state)
        assert not problems, f"t={now}: {problems}"

    monkeypatch.setattr(replay_module, "decide", both)
    report = run(snapshot, scale_trace(600, seed=7), on_step=check)
    assert report["jobs"] == 600 and sum(compared) > 200
    assert report["preemptions"] > 0
    borrowed = [row["max_borrowed"]["CPU"] for row in report["by_queue"].values() if "max_borrowed" in row]
    assert max(borrowed) > 0 and all(peak <= 64 for peak in borrowed)
