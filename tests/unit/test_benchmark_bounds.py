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


def test_hetero_first_fit_lists_take_what_todays_rules_take():
    """benchmarks/hetero_trace.py's baseline: on each mix of free types, the ordered list in
    ``TODAYS_ORDER`` plans the type that ``GPU:N`` and ``any_of`` plan as written."""
    from benchmarks.hetero_trace import NODES, TODAYS_ORDER, TYPES, as_lists, speed
    from orchestrator.core.allocator import plan
    from orchestrator.core.spec import JobSpec

    assert speed("V100") == 1 and speed("K80") < speed("P100") < 1
    written = [{"name": "g", "class": "gpu-2", "submit_s": 0, "runtime_s": 1,
                "resources": {"accelerator": "GPU:2", "cpus": 4}},
               {"name": "a", "class": "gpu-2", "submit_s": 0, "runtime_s": 1,
                "resources": {"accelerator": {"any_of": [f"{name}:2" for name in TYPES]}, "cpus": 4}}]
    for absent in ([], ["k80"], ["p100"], ["k80", "p100"], ["v100", "p100"]):
        snapshot = cluster(*(node for node in NODES if node["name"] not in absent))
        for line, listed in zip(written, as_lists(written, TODAYS_ORDER)):
            specs = [JobSpec.model_validate({"name": "j", "entrypoint": "x.py:f", "resources": form["resources"]})
                     for form in (line, listed)]
            assert plan(specs[0], snapshot).accelerator == plan(specs[1], snapshot).accelerator, (absent, line["name"])
