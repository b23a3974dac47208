"""The one usage, quota and cohort arithmetic: what a plan holds, what a queue may still take,
which of a node's CPUs and memory come with its devices. Used by the policy, autoscale and the
control plane."""

from __future__ import annotations

from typing import Iterable, Mapping

from orchestrator.core import hardware
from orchestrator.core.allocator import Plan
from orchestrator.core.snapshot import EPS, QUOTA_RESOURCES, ClusterSnapshot, Node, NodeClass, QueueConfig, SnapshotIndex
from orchestrator.core.spec import Resources


def totals(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Sums of the quota resources over ``parts`` (per-node demands)."""
    summed = dict.fromkeys(QUOTA_RESOURCES, 0.0)
    for part in parts:
        for key in QUOTA_RESOURCES:
            summed[key] += part.get(key, 0.0)
    return summed


def plan_totals(plan: Plan) -> dict[str, float]:
    """What ``plan`` holds in all, per quota resource (a sweep's trial slots included)."""
    return {key: sum(part.per_worker.get(key, 0.0) * part.workers for part in (plan, *plan.trials))
            for key in QUOTA_RESOURCES}


def quota_room(queue: QueueConfig, resource: str, usage: Mapping[str, Mapping[str, float]],
               cohort: Iterable[QueueConfig]) -> float:
    """How much more of ``resource`` ``queue`` may hold now (its quota must name it).

    Its own unused quota, plus up to ``borrow`` of what the cohort's other
    queues leave unused, net of what those queues borrow themselves.
    """
    held = usage.get(queue.name, {}).get(resource, 0.0)
    lendable = 0.0
    for other in cohort:
        if other.name != queue.name and other.quota and resource in other.quota:
            lendable += other.quota[resource] - usage.get(other.name, {}).get(resource, 0.0)
    borrow = min((queue.borrow or {}).get(resource, 0.0), max(lendable, 0.0))
    return queue.quota[resource] + borrow - held


def least_held(resources: Resources) -> dict[str, float]:
    """The CPUs and memory a job of ``resources`` holds at least, whatever accelerator option it gets."""
    workers = resources.workers.min
    return {hardware.CPU: resources.cpus * workers, hardware.MEMORY: float(resources.memory * workers)}


def cohorts(snapshot: ClusterSnapshot) -> dict[str, list[QueueConfig]]:
    """Cohort name -> its queues; remembered with the snapshot's index (derived snapshots share both)."""
    key = ("queue: cohorts", id(snapshot.queues))
    known = snapshot.index.memo.get(key)
    if known is None or known[0] is not snapshot.queues:
        cohorts: dict[str, list[QueueConfig]] = {}
        for queue in snapshot.queues.values():
            if queue.cohort:
                cohorts.setdefault(queue.cohort, []).append(queue)
        known = snapshot.index.memo[key] = (snapshot.queues, cohorts)
    return known[1]


def busy(node, kind: str) -> float:
    """The held share of ``kind`` on ``node``."""
    total = node.total.get(kind, 0.0)
    return (total - node.free.get(kind, 0.0)) / total if total else 0.0


def device_classes(resources: Resources, index: SnapshotIndex) -> frozenset[int]:
    """The accelerator node classes whose devices some accelerator option of ``resources`` may use."""
    found = set()
    for option in resources.accelerator.options:
        if option.kind == "cpu":
            continue
        for cid, cls in enumerate(index.classes):
            if not cls.device_key:
                continue
            if option.kind == "auto" or (option.kind == "gpu" and option.type is None):
                ok = option.kind == "auto" or cls.device_key == hardware.GPU
            elif option.kind == "slice":
                ok = cls.ray_type == option.slice.accelerator.ray_type and cls.pod_type == option.slice.pod_type
            else:
                ok = cls.ray_type == option.type.ray_type
            if ok:
                found.add(cid)
    return frozenset(found)


def device_share(cls: NodeClass, node: Node) -> dict[str, float]:
    """The CPUs and memory that come with ``node``'s free devices, in proportion to its totals."""
    devices = cls.total.get(cls.device_key, 0.0) if cls.device_key else 0.0
    idle = node.free.get(cls.device_key, 0.0) if devices else 0.0
    if idle <= EPS:
        return {}
    return {key: cls.total.get(key, 0.0) * idle / devices for key in (hardware.CPU, hardware.MEMORY)}
