"""Synthetic clusters and jobs: allocator tests and benchmarks/allocator_scale.py share them.

Clusters are built through a cluster file (``ClusterFile``), so synthetic
nodes carry exactly the resources and labels of ``orch up`` nodes.
"""

from __future__ import annotations

import random

from orchestrator.core import hardware
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec
from orchestrator.load.cluster import ClusterFile, snapshot_from_cluster

# Node types and their share of the cluster: CPU machines, small and large GPU
# machines, a multi-host TPU slice type and single-host TPUs.
NODE_TYPES = (
    ({"name": "cpu", "cpus": 32, "memory": "128GiB"}, 0.28),
    ({"name": "cpu-small", "cpus": 8, "memory": "32GiB"}, 0.10),
    ({"name": "t4", "cpus": 8, "memory": "32GiB", "accelerator": "T4:1"}, 0.10),
    ({"name": "l4", "cpus": 16, "memory": "64GiB", "accelerator": "L4:2"}, 0.10),
    ({"name": "a100", "cpus": 32, "memory": "256GiB", "accelerator": "A100:4"}, 0.12),
    ({"name": "a100x8", "cpus": 96, "memory": "1TiB", "accelerator": "A100:8"}, 0.05),
    ({"name": "h100", "cpus": 96, "memory": "1TiB", "accelerator": "H100:8"}, 0.05),
    ({"name": "v4", "cpus": 64, "memory": "256GiB", "accelerator": "TPU-v4:4", "tpu_slice": "v4-16"}, 0.12),
    ({"name": "v5e", "cpus": 24, "memory": "48GiB", "accelerator": "TPU-v5e:4"}, 0.08),
)

# Job shapes: CPU, any GPU, exact types, fallbacks, any_of, slices, single-host
# TPUs, elastic ranges, every placement strategy, auto, gangs that must wait
# and jobs that never fit.
JOB_SHAPES = (
    {"cpus": 2, "memory": "4GiB"},
    {"workers": 4, "cpus": 4, "memory": "16GiB", "placement": "spread"},
    {"accelerator": "GPU:1"},
    {"accelerator": "A100:2", "workers": 2},
    {"accelerator": ["H100:8", "A100:8"], "workers": 2},
    {"accelerator": {"any_of": ["A100:1", "L4:1", "TPU-v5e:4"]}},
    {"accelerator": "TPU-v4-16"},
    {"accelerator": "TPU-v5e:4", "workers": "1..4"},
    {"accelerator": "T4:1", "workers": 8, "placement": "strict_spread"},
    {"accelerator": "L4:1", "workers": 2, "placement": "strict_pack"},
    {"accelerator": "auto"},
    {"accelerator": ["A100:4", "GPU:2"], "workers": 64},
    {"accelerator": "A100:4", "workers": 200},
    {"accelerator": "H100:8", "memory": "2TiB"},
)


def synthetic_cluster(nodes: int = 1000, busy: float = 0.5, seed: int = 0,
                      queues: dict | None = None) -> ClusterSnapshot:
    """About ``nodes`` mixed nodes; ``busy`` is the share of nodes with some resources taken."""
    entries = []
    for entry, share in NODE_TYPES:
        count = max(2, round(nodes * share / 2) * 2)  # even: v4-16 slices have 2 hosts
        entries.append({**entry, "count": count})
    cluster = ClusterFile.model_validate({"name": "synthetic", "nodes": entries, "queues": queues or {}})
    return occupy(snapshot_from_cluster(cluster), busy, seed)


def occupy(snapshot: ClusterSnapshot, busy: float, seed: int = 0) -> ClusterSnapshot:
    """Take a random part of the CPUs, memory and devices of a random ``busy`` share of nodes."""
    rng = random.Random(seed)
    demand = {}
    for node in snapshot.nodes:
        if rng.random() >= busy:
            continue
        taken = {key: float(rng.randint(0, int(node.total[key])))
                 for key in (hardware.CPU, hardware.GPU, hardware.TPU) if node.total.get(key)}
        taken[hardware.MEMORY] = node.total[hardware.MEMORY] * rng.random()
        demand[node.name] = taken
    return snapshot.allocate(demand)


def synthetic_jobs(count: int, seed: int = 0) -> list[JobSpec]:
    """``count`` job specs of mixed shapes, CPUs, memory and model sizes."""
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        resources = dict(rng.choice(JOB_SHAPES))
        resources.setdefault("cpus", rng.choice((1, 2, 4, 8)))
        resources.setdefault("memory", rng.choice(("2GiB", "8GiB", "32GiB")))
        spec = {"name": f"job-{i}", "entrypoint": "train.py:train_loop", "resources": resources}
        if resources.get("accelerator") == "auto":
            spec["hints"] = {"params": rng.choice((5_000_000, 350_000_000, 7_000_000_000, 12_000_000_000))}
        jobs.append(JobSpec.model_validate(spec))
    return jobs
