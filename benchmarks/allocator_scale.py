"""Allocator scale: plans per second for 1k, 10k and 100k queued jobs on 1,000 mixed nodes.

    .venv/bin/python benchmarks/allocator_scale.py

The baseline, measured in the same run on the same jobs and snapshot, is the
obvious way to decide placement without orch: for each option in order and
each worker, loop over every node and take the first one with the resources
(first fit on free, then on total). It does less than ``plan()`` (no best
fit, no reasons, no auto, no quota), so the ratio understates orch's lead.
Each batch plans against a fresh snapshot, so nothing is remembered between
batches; within a batch jobs of the same shape share the work on the totals.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.core import hardware  # noqa: E402
from orchestrator.core.allocator import plan  # noqa: E402
from orchestrator.core.snapshot import ClusterSnapshot, Node  # noqa: E402
from orchestrator.core.spec import JobSpec  # noqa: E402
from benchmarks.synthetic import synthetic_cluster, synthetic_jobs  # noqa: E402

NODES = 1000
BATCHES = (1_000, 10_000, 100_000)
NAIVE_SAMPLE = 2_000  # the baseline is slow; its rate comes from this many jobs of each batch
TARGET = 20_000


def naive_plan(spec: JobSpec, nodes: tuple[Node, ...]) -> str:
    """First fit, written the obvious way; returns the status only."""
    workers = spec.resources.workers.min
    for request in spec.resources.accelerator.options:
        need, wanted = _naive_need(spec, request)
        for view in ("free", "total"):
            if _naive_fits(nodes, need, wanted, workers, view, request):
                return "placeable" if view == "free" else "queued"
    return "infeasible"


def _naive_need(spec: JobSpec, request) -> tuple[dict, str | None]:
    need = {hardware.CPU: spec.resources.cpus, hardware.MEMORY: spec.resources.memory}
    if request.kind == "slice":
        need[hardware.TPU] = request.slice.chips_per_host
        return need, request.slice.pod_type
    if request.kind in ("gpu", "tpu", "auto"):
        need[hardware.TPU if request.kind == "tpu" else hardware.GPU] = max(request.count, 1)
    return need, request.type.ray_type if request.type else None


def _naive_fits(nodes, need: dict, wanted: str | None, workers: int, view: str, request) -> bool:
    if request.kind == "slice":
        slices: dict[str, list[Node]] = {}
        for node in nodes:
            if node.labels.get(hardware.LABEL_TPU_POD_TYPE) == wanted:
                slices.setdefault(node.labels[hardware.LABEL_TPU_SLICE_NAME], []).append(node)
        return any(all(_has(getattr(n, view), need) for n in hosts) for hosts in slices.values())
    used: dict[str, dict] = {}
    start = 0  # first fit: nodes before the last one used are already too full for this worker
    for _ in range(workers):
        for i in range(start, len(nodes)):
            node = nodes[i]
            if wanted and node.labels.get(hardware.LABEL_ACCELERATOR_TYPE) != wanted:
                continue
            have, taken = getattr(node, view), used.setdefault(node.name, {})
            if all(have.get(key, 0) - taken.get(key, 0) >= amount for key, amount in need.items()):
                for key, amount in need.items():
                    taken[key] = taken.get(key, 0) + amount
                start = i
                break
        else:
            return False
    return True


def _has(have, need: dict) -> bool:
    return all(have.get(key, 0) >= amount for key, amount in need.items())


def rate(function, jobs, snapshot: ClusterSnapshot) -> float:
    start = time.perf_counter()
    for spec in jobs:
        function(spec, snapshot)
    return len(jobs) / (time.perf_counter() - start)


def main() -> None:
    all_jobs = synthetic_jobs(max(BATCHES), seed=7)
    shapes = len({(j.resources, j.hints.params) for j in all_jobs})
    print(f"{NODES} nodes, {max(BATCHES):,} jobs of {shapes} distinct shapes generated")
    results = {}
    for count in BATCHES:
        jobs = all_jobs[:count]
        orch = rate(plan, jobs, synthetic_cluster(NODES, busy=0.5, seed=1))
        snapshot = synthetic_cluster(NODES, busy=0.5, seed=1)
        naive = rate(lambda spec, snap: naive_plan(spec, snap.nodes), jobs[:NAIVE_SAMPLE], snapshot)
        results[count] = (orch, naive)
        print(f"{count:>7,} jobs: orch {orch:>9,.0f} plans/s   naive first-fit {naive:>7,.0f} plans/s   "
              f"x{orch / naive:.1f}")
    growth = results[BATCHES[-1]][0] / results[BATCHES[0]][0]
    print(f"rate at {BATCHES[-1]:,} jobs / rate at {BATCHES[0]:,} jobs: {growth:.2f} "
          "(1.0 = no slowdown with queue length)")
    orch, naive = results[10_000]
    print(f"allocator_scale: 10k jobs on 1k nodes: {orch:,.0f} plans/s (target >= {TARGET:,}), "
          f"x{orch / naive:.1f} vs naive first-fit")


if __name__ == "__main__":
    main()
