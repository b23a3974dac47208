"""Simulation at scale: 15,000 jobs on 30 queues in 5 cohorts on 30 nodes, orch vs FIFO.

    .venv/bin/python benchmarks/simulate_scale.py

Jobs of 1, 5 and 20 CPUs, with some GPU and TPU jobs, arrive faster than the
cluster drains them, so the queue grows through the run: the regime where a
policy matters. Both policies replay the same trace through ``orch simulate``.
Targets: orch's mean wait <= 0.5 x FIFO's, utilization >= 0.85, and the orch
simulation under 30 s of wall time on 2 cores. The last line is the figure.

What bounds utilization (measured, not tuned): the work is about 26,200 s of
all CPUs, 24,000 s of the GPUs and 22,900 s of the TPU hosts, so a makespan
near the CPU bound would give about 0.93. The benchmark also replays the trace
on the CPU nodes pooled into one node (``pooled``: no packing loss, same
quotas and priorities): orch reaches 0.847 there, so node packing is not what
keeps it below 0.85; the queue rules on this trace's quotas are. A TPU job's
32 CPUs are its queue's whole CPU quota and every cohort is overloaded, so
nobody lends: a TPU job starts only when its queue holds nothing, its
higher-priority work included, and the TPU hosts idle meanwhile. Strict
priority within a queue's quota leaves the low-priority 20-CPU jobs for last
(a queue's higher-priority jobs keep it above the 12 CPUs such a job needs):
on real nodes they fit one per 32-CPU node, so the last 4,000-5,000 s run the
CPUs at about 65% and the devices not at all. Without quotas the same trace
reaches about 0.85 on the real nodes and 0.91 pooled.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scheduling_trace import cluster, make_trace, summary  # noqa: E402
from orchestrator.core.simulate import simulate  # noqa: E402

JOBS = 15_000
SEED = 2
NODES = [
    {"name": "cpu", "count": 24, "cpus": 32, "memory": "128GiB"},
    {"name": "a100", "count": 4, "cpus": 32, "memory": "256GiB", "accelerator": "A100:4"},
    {"name": "v4", "count": 2, "cpus": 32, "memory": "128GiB", "accelerator": "TPU-v4:4"},
]


def pooled(nodes: list[dict]) -> list[dict]:
    """``nodes`` with the CPU-only entries merged into one node of all their CPUs and memory."""
    plain = [entry for entry in nodes if "accelerator" not in entry]
    merged = {"name": "cpu-pool", "count": 1, "cpus": sum(e["count"] * e["cpus"] for e in plain),
              "memory": f"{sum(e['count'] * int(e['memory'].removesuffix('GiB')) for e in plain)}GiB"}
    return [merged, *(entry for entry in nodes if "accelerator" in entry)]


COHORTS, PER_COHORT = 5, 6
# 960 CPUs: each queue's quota is its share, and it may borrow three times that in its cohort.
QUEUES = {f"cq-{c * PER_COHORT + q}": {"quota": {"CPU": 32}, "cohort": f"cohort-{c}", "borrow": {"CPU": 96}}
          for c in range(COHORTS) for q in range(PER_COHORT)}
SHAPES = [
    ("cpu-1", None, {"cpus": 1, "memory": "2GiB"}, 0.55),
    ("cpu-5", None, {"cpus": 5, "memory": "8GiB"}, 0.25),
    ("cpu-20", None, {"cpus": 20, "memory": "32GiB"}, 0.12),
    ("gpu", None, {"cpus": 8, "memory": "32GiB", "accelerator": "GPU:1"}, 0.08),
    ("tpu", None, {"cpus": 32, "memory": "64GiB", "accelerator": "TPU-v4:4"}, 0.009),
]
# Runtimes average 330 s. The CPU nodes drain ~0.55 CPU jobs/s (768 CPUs / 4.2 CPUs x 330 s), the
# A100s ~0.05 GPU jobs/s and the TPU hosts ~0.006 TPU jobs/s: arrivals at 0.72 jobs/s load
# every kind of hardware about 1.1-1.2 times what it drains.
SPREAD_S = JOBS / 0.72


def main() -> None:
    snapshot = cluster(NODES, QUEUES, "scale-30")
    trace = make_trace(SHAPES, sorted(QUEUES), JOBS, spread_s=SPREAD_S, seed=SEED)
    orch = simulate(snapshot, trace, "orch")
    fifo = simulate(snapshot, trace, "fifo")
    packed = simulate(cluster(pooled(NODES), QUEUES, "scale-30-pooled"), trace, "orch")
    print(f"{orch['jobs']} jobs, {len(QUEUES)} queues in {COHORTS} cohorts, {len(snapshot.nodes)} nodes, "
          f"arrivals over {SPREAD_S:.0f} s")
    print(summary("orch", orch))
    print(summary("fifo", fifo))
    for name, row in orch["by_class"].items():
        print(f"{name:>12}: wait mean {row['mean_wait_s']:8.1f} s p99 {row['p99_wait_s']:8.1f} s "
              f"(fifo {fifo['by_class'][name]['mean_wait_s']:8.1f} s / {fifo['by_class'][name]['p99_wait_s']:8.1f} s)")
    print(f"orch on the CPU nodes pooled into one (no packing loss; same trace, quotas and priorities): "
          f"utilization {packed['utilization']:.3f}, makespan {packed['makespan_s']:.0f} s "
          f"(on the real nodes {orch['makespan_s']:.0f} s)")
    print(f"orch/fifo mean wait ratio: {orch['mean_wait_s'] / fifo['mean_wait_s']:.3f} (target <= 0.5); "
          f"orch utilization {orch['utilization']:.3f} (target >= 0.85); "
          f"orch simulation wall {orch['wall_s']:.1f} s (target < 30 s)")


if __name__ == "__main__":
    main()
