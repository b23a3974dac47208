"""The bounds the simulation benchmarks print next to their figures: small cases worked out by hand."""

from __future__ import annotations

from benchmarks.scheduling_trace import greedy_ceiling, held_by, lower_bound
from benchmarks.simulate_scale import pooled
from orchestrator.load.trace import trace_job
from tests.unit.test_simulate import CPU4, job
from tests.unit.test_queue import cluster

# One 4-CPU node; three 2-CPU jobs of 10, 10 and 30 s submitted at once: 100 CPU-seconds of work.
TRACE = [trace_job(job(name, 0, runtime, cpus=2)) for name, runtime in (("a", 10), ("b", 10), ("c", 30))]


def test_greedy_ceiling_depends_on_the_order_of_equal_jobs():
    snapshot = cluster(CPU4)
    held = held_by(snapshot, TRACE)
    submit = greedy_ceiling(snapshot, TRACE, held, lambda j: j.name)  # a, b first: c starts at 10, ends at 40
    longest = greedy_ceiling(snapshot, TRACE, held, lambda j: -j.runtime_s)  # c with a, then b: ends at 30
    assert submit == 100 / (4 * 40)
    assert longest == 100 / (4 * 30)


def test_lower_bound_is_work_over_capacity_or_the_longest_job():
    snapshot = cluster(CPU4)
    bound = lower_bound(snapshot, TRACE, held_by(snapshot, TRACE))
    assert bound["makespan_s"] == 30  # the longest job; the work alone needs 100 / 4 = 25 s
    assert bound["mean_jct_s"] == 50 / 3


def test_pooled_merges_only_the_cpu_nodes():
    nodes = [{"name": "cpu", "count": 3, "cpus": 32, "memory": "128GiB"},
             {"name": "small", "count": 2, "cpus": 4, "memory": "16GiB"},
             {"name": "a100", "count": 4, "cpus": 32, "memory": "256GiB", "accelerator": "A100:4"}]
    assert pooled(nodes) == [{"name": "cpu-pool", "count": 1, "cpus": 104, "memory": "416GiB"}, nodes[2]]


def test_submit_latency_counts_a_lost_or_doubled_submission():
    from benchmarks.submit_latency import accounted, percentile

    assert accounted(["a", "b"], ["b", "a"]) == (0, 0)
    assert accounted(["a", "b"], ["a"]) == (1, 0)  # b was answered but never kept
    assert accounted(["a", "a"], ["a"]) == (0, 1)  # two clients were given one id
    assert accounted(["a"], ["a", "a"]) == (0, 1)  # one submission kept twice
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([float(n) for n in range(101)], 0.99) == 99.0
