"""Scheduling quality: orch's queue policy vs FIFO vs a lower bound, in simulated time; and what
runtime estimates (EASY backfill, ETAs) change, told exactly or with noise.

    .venv/bin/python benchmarks/scheduling_trace.py

500 mixed CPU/GPU/TPU jobs in four queues (two cohorts, quotas, borrowing,
priorities, preemptible jobs) arrive in a burst on a simulated 100-node mixed
cluster and run through the same allocator and queue policy as the control
plane (``orch simulate``), once with policy orch and once with SPEC.md's
FIFO baseline. The lower bound: a job's completion time is at least its
runtime, and the makespan is at least each resource kind's work over its
capacity (and the last submission plus its runtime).
Targets: mean JCT <= 0.7 x FIFO's, utilization >= 0.85. The last line is the figure.

Queue ``prod`` may borrow what ``research`` leaves unused as ``research`` may
from it (GPU 60, CPU 800). It used to borrow 30 GPUs and no CPUs: its 8-GPU
jobs carry three quarters of the lab cohort's GPU work, yet it could never
hold more than 90 of the 120 GPUs, nor (at 64 CPUs a job, against an
800-CPU quota) more than 12 jobs. With research's jobs queued within its
quota, prod held at most 56 GPUs, after that at most 88: no policy that keeps
quotas could pass 0.82 utilization, so the benchmark measured that setting,
not the policy. FIFO ignores quotas: its figures do not depend on it.

Utilization here is bounded by the trace's shape, whatever the queue order:
jobs arrive over 600 s, each resource kind has about 1,540 s of the whole
cluster's work, and runtimes run from 60 to 600 s, so the drain after the last
start is a large part of any makespan. The benchmark measures that ceiling in
the same run: a greedy schedule that pools each resource kind (no nodes, gangs,
quotas or priorities, so it packs perfectly) and starts every job that fits,
in submit order or in 20 random orders, reaches about 0.79 (at most 0.81).
Random orders are what a policy that does not know runtimes amounts to here,
since the trace draws runtimes independently of class, priority and arrival.
Only an order that knows runtimes (longest first) passes 0.85: the target is
above what a runtime-blind queue can reach on this trace, and orch's 0.76,
with real nodes, gangs, quotas and strict priorities, is within 0.03 of it.

Estimates (issue 20): orch is run told nothing (``--estimates none``, the
figures above), the true runtimes (``exact``) and each runtime times a
lognormal factor of median 2 (``noisy``, seeded). Targets: exact, utilization
>= 0.85 and mean JCT <= 0.85 x without; noisy, no worse than without; the
median ETA error with exact estimates <= 0.25 x the mean wait. Measured: exact
estimates take mean JCT to 0.95 x and leave utilization and makespan exactly
where they were (0.762, 2016 s). That is the rule working as meant, not
falling short by accident: EASY backfill lets a later job use reserved
resources only when it ends before the reserved job starts, so it never
delays a job ahead and never changes the order of the jobs that reserve.
The makespan is set by low-priority (50) gpu-large gangs (two whole A100
nodes, ~500 s) that strict priority leaves for last: they start near 1,500 s
with or without estimates. Passing 0.85 needs runtimes to change the order
(longest first, 0.922 above), which SPEC.md's order (priority, then submit
order) does not allow. With exact estimates more than half of the ETAs are
exact, so the median error is 0: 57 of the 167 sampled jobs start at submit
(the line gives the count) and at least 27 of those that wait start when
forecast. The p90 is a few hundred seconds: a forecast cannot know of the
higher-priority jobs that arrive after it and go ahead.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.core.allocator import plan  # noqa: E402
from orchestrator.core.policy.quota import plan_totals  # noqa: E402
from orchestrator.core.simulate import TraceJob, kind_capacity, simulate  # noqa: E402
from orchestrator.core.snapshot import ClusterSnapshot  # noqa: E402
from orchestrator.load.cluster import ClusterFile, snapshot_from_cluster  # noqa: E402
from orchestrator.load.trace import trace_job  # noqa: E402

JOBS = 500
SEED = 1
NOISE_SIGMA = 0.5  # of the estimates' lognormal factor: a quarter of users are off by more than 1.4x
NODES = [
    {"name": "cpu", "count": 50, "cpus": 32, "memory": "128GiB"},
    {"name": "a100", "count": 30, "cpus": 32, "memory": "256GiB", "accelerator": "A100:4"},
    {"name": "v4", "count": 20, "cpus": 32, "memory": "128GiB", "accelerator": "TPU-v4:4", "tpu_slice": "v4-16"},
]
QUEUES = {
    "research": {"quota": {"GPU": 60, "CPU": 800}, "cohort": "lab", "borrow": {"GPU": 60, "CPU": 800}},
    "prod": {"quota": {"GPU": 60, "CPU": 800}, "cohort": "lab", "borrow": {"GPU": 60, "CPU": 800}},
    "etl": {"quota": {"CPU": 1600, "TPU": 40}, "cohort": "data", "borrow": {"CPU": 800, "TPU": 40}},
    "tpu": {"quota": {"CPU": 1600, "TPU": 40}, "cohort": "data", "borrow": {"TPU": 40}},
}
# (class, queue, resources, share of jobs); GPU and TPU jobs take the CPUs that come with their devices.
SHAPES = [
    ("cpu-small", "etl", {"cpus": 4, "memory": "8GiB"}, 0.30),
    ("cpu-large", "etl", {"workers": 4, "cpus": 16, "memory": "32GiB"}, 0.22),
    ("gpu-small", "research", {"cpus": 8, "memory": "32GiB", "accelerator": "GPU:1"}, 0.25),
    ("gpu-large", "prod", {"workers": 2, "cpus": 32, "memory": "128GiB", "accelerator": "A100:4"}, 0.12),
    ("tpu-host", "tpu", {"cpus": 32, "memory": "64GiB", "accelerator": "TPU-v4:4"}, 0.08),
    ("tpu-slice", "tpu", {"cpus": 32, "memory": "64GiB", "accelerator": "TPU-v4-16"}, 0.06),
]


def cluster(nodes: list[dict], queues: dict, name: str) -> ClusterSnapshot:
    return snapshot_from_cluster(ClusterFile.model_validate({"name": name, "nodes": nodes, "queues": queues}))


def make_trace(shapes: list[tuple], queues: list[str] | None, jobs: int, spread_s: float, seed: int) -> list[TraceJob]:
    """``jobs`` random jobs of ``shapes`` over ``spread_s`` seconds; ``queues`` overrides each shape's queue."""
    rng = random.Random(seed)
    weights = [shape[-1] for shape in shapes]
    trace = []
    for i in range(jobs):
        job_class, queue, resources, _ = rng.choices(shapes, weights)[0]
        preemptible = rng.random() < 0.4
        line = {"name": f"j{i}", "class": job_class, "submit_s": round(rng.uniform(0, spread_s), 3),
                "runtime_s": round(rng.uniform(60, 600), 1), "priority": rng.choice((50, 100, 100, 500)),
                "queue": rng.choice(queues) if queues else queue, "preemptible": preemptible,
                "resources": resources}
        if preemptible:
            line["checkpoint_s"] = 60
        trace.append(trace_job(line))
    return trace


def held_by(snapshot: ClusterSnapshot, trace: list[TraceJob]) -> dict[str, dict[str, float]]:
    """What each job of ``trace`` holds while it runs, per resource kind, as the allocator plans it."""
    return {job.name: plan_totals(plan(job.spec, snapshot)) for job in trace}


def _work(snapshot: ClusterSnapshot, trace: list[TraceJob], held: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per resource kind, the trace's work in seconds of the whole cluster's capacity."""
    return {kind: sum(held[job.name][kind] * job.runtime_s for job in trace) / total
            for kind, total in kind_capacity(snapshot).items()}


def lower_bound(snapshot: ClusterSnapshot, trace: list[TraceJob],
                held: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean JCT >= mean runtime; makespan >= max(work per kind / capacity, last submit + runtime)."""
    start = min(job.submit_s for job in trace)
    makespan = max([*_work(snapshot, trace, held).values(), *(job.submit_s + job.runtime_s - start for job in trace)])
    return {"mean_jct_s": sum(job.runtime_s for job in trace) / len(trace), "makespan_s": makespan}


def greedy_ceiling(snapshot: ClusterSnapshot, trace: list[TraceJob], held: dict[str, dict[str, float]],
                   order: Callable[[TraceJob], float]) -> float:
    """Utilization of a relaxed greedy schedule: each resource kind one pool (no nodes, gangs,
    quotas or priorities), jobs started in ``order`` whenever they fit; the mean over kinds of
    work / (capacity x the latest kind's makespan), as ``simulate`` reports utilization."""
    start = min(job.submit_s for job in trace)
    ends = [_pool_makespan([job for job in trace if held[job.name][kind]], lambda j, k=kind: held[j.name][k],
                           total, order) - start for kind, total in kind_capacity(snapshot).items()]
    work = _work(snapshot, trace, held)
    return sum(work.values()) / len(work) / max(ends)


def _pool_makespan(jobs: list[TraceJob], size: Callable[[TraceJob], float], capacity: float,
                   order: Callable[[TraceJob], float]) -> float:
    """List scheduling on one pool: at each arrival or finish, start every waiting job that fits, in ``order``."""
    arrivals = sorted(jobs, key=lambda j: j.submit_s)
    running: list[tuple[float, float]] = []  # (finish, size)
    waiting: list[TraceJob] = []
    free, now, end, i = capacity, 0.0, 0.0, 0
    while i < len(arrivals) or running:
        now = min(arrivals[i].submit_s if i < len(arrivals) else math.inf, running[0][0] if running else math.inf)
        while i < len(arrivals) and arrivals[i].submit_s <= now:
            bisect.insort(waiting, arrivals[i], key=order)
            i += 1
        while running and running[0][0] <= now:
            free += heapq.heappop(running)[1]
        for job in list(waiting):
            if size(job) <= free + 1e-9:
                free -= size(job)
                heapq.heappush(running, (now + job.runtime_s, size(job)))
                end = max(end, now + job.runtime_s)
                waiting.remove(job)
    return end


def ceilings(snapshot: ClusterSnapshot, trace: list[TraceJob], held: dict[str, dict[str, float]],
             orders: int = 20) -> dict[str, float]:
    """``greedy_ceiling`` in submit order, in ``orders`` random orders (what a policy blind to
    runtimes is, since the trace draws runtimes independently of everything else), and
    longest-runtime-first (an oracle)."""
    rng = random.Random(SEED)
    shuffled = []
    for _ in range(orders):
        rank = {job.name: rng.random() for job in trace}
        shuffled.append(greedy_ceiling(snapshot, trace, held, lambda j, rank=rank: rank[j.name]))
    return {"submit": greedy_ceiling(snapshot, trace, held, lambda j: j.submit_s),
            "random_mean": sum(shuffled) / orders, "random_max": max(shuffled),
            "longest_first": greedy_ceiling(snapshot, trace, held, lambda j: -j.runtime_s)}


def summary(label: str, report: dict) -> str:
    return (f"{label:>12}: mean JCT {report['mean_jct_s']:9.1f} s  mean wait {report['mean_wait_s']:9.1f} s  "
            f"makespan {report['makespan_s']:9.1f} s  utilization {report['utilization']:.3f} "
            f"{report['utilization_by_resource']}  preemptions {report['preemptions']}  wall {report['wall_s']:.2f} s")


def noisy(trace: list[TraceJob], seed: int = SEED) -> list[TraceJob]:
    """``trace`` with each job told an estimate of its runtime times a lognormal factor of median
    2 (``NOISE_SIGMA``): users overestimate, by varying amounts, and some underestimate."""
    rng = random.Random(seed)
    return [replace(job, estimate_s=round(job.runtime_s * 2 * rng.lognormvariate(0, NOISE_SIGMA), 1))
            for job in trace]


def main() -> None:
    snapshot = cluster(NODES, QUEUES, "bench-100")
    trace = make_trace(SHAPES, None, JOBS, spread_s=600.0, seed=SEED)
    orch, fifo = simulate(snapshot, trace, "orch", estimates="none"), simulate(snapshot, trace, "fifo")
    exact = simulate(snapshot, trace, "orch", estimates="exact")
    told = simulate(snapshot, noisy(trace), "orch", estimates="trace")
    held = held_by(snapshot, trace)
    bound = lower_bound(snapshot, trace, held)
    print(f"{len(trace)} jobs on {len(snapshot.nodes)} nodes; classes: "
          + ", ".join(f"{name} {row['jobs']}" for name, row in orch["by_class"].items()))
    print(summary("orch", orch))
    print(summary("fifo", fifo))
    print(f"{'lower bound':>12}: mean JCT {bound['mean_jct_s']:9.1f} s  makespan {bound['makespan_s']:9.1f} s")
    for name, row in orch["by_class"].items():
        print(f"{name:>12}: wait mean {row['mean_wait_s']:8.1f} s p99 {row['p99_wait_s']:8.1f} s "
              f"(fifo {fifo['by_class'][name]['mean_wait_s']:8.1f} s / {fifo['by_class'][name]['p99_wait_s']:8.1f} s)")
    print(f"mean JCT vs lower bound: orch {orch['mean_jct_s'] / bound['mean_jct_s']:.2f}x, "
          f"fifo {fifo['mean_jct_s'] / bound['mean_jct_s']:.2f}x")
    ceiling = ceilings(snapshot, trace, held)
    print(f"utilization of greedy schedules on pooled resources (no nodes, gangs, quotas or priorities): "
          f"submit order {ceiling['submit']:.3f}, 20 random orders mean {ceiling['random_mean']:.3f} "
          f"max {ceiling['random_max']:.3f}; longest runtime first (knows runtimes) {ceiling['longest_first']:.3f}")
    print(f"orch/fifo mean JCT ratio: {orch['mean_jct_s'] / fifo['mean_jct_s']:.3f} (target <= 0.7); "
          f"orch utilization {orch['utilization']:.3f} (target >= 0.85)")
    print(summary("orch exact", exact))
    print(summary("orch noisy", told))
    for label, report in (("exact", exact), ("noisy", told)):
        eta = report["eta_error"]
        print(f"eta_error {label}: {eta['jobs']} jobs predicted at submit, median |error| {eta['median_abs_s']:.1f} s, "
              f"p90 {eta['p90_abs_s']:.1f} s, unknown {eta['unknown']}, started at submit {eta['started_at_submit']}; mean wait {report['mean_wait_s']:.1f} s "
              f"(median target <= 0.25 x mean wait = {0.25 * report['mean_wait_s']:.1f} s)")
    print(f"noisy estimates (x lognormal, median 2): mean JCT {told['mean_jct_s'] / orch['mean_jct_s']:.3f} x, "
          f"utilization {told['utilization']:.3f} vs {orch['utilization']:.3f} without (target: no worse)")
    print(f"orch exact estimates / without, mean JCT: {exact['mean_jct_s']:.1f} / {orch['mean_jct_s']:.1f} = "
          f"{exact['mean_jct_s'] / orch['mean_jct_s']:.3f} (target <= 0.85; utilization {exact['utilization']:.3f}, "
          f"target >= 0.85)")


if __name__ == "__main__":
    main()
