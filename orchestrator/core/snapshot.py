"""Cluster snapshots: nodes with their total and free Ray resources and labels.

A ``ClusterSnapshot`` is plain data the allocator plans against. It comes from
a live Ray cluster (the control plane builds it) or from a cluster file
(SPEC.md section 2, ``load.cluster.snapshot_from_cluster``). Resource and label names are
exactly the ones real Ray nodes carry: ``CPU``, ``memory`` (bytes), ``GPU``,
``TPU``, ``accelerator_type:A100``, ``TPU-v4-16-head``, and the ``ray.io/...``
labels, so the same plan works on a simulated and on a real cluster.

Snapshots are immutable: ``allocate``/``release`` return a new snapshot that
shares everything that did not change (the static ``SnapshotIndex`` and the
per-class free orderings of untouched node classes), so a queue or simulator
can take and give back resources thousands of times a second.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Iterable, Mapping

from orchestrator.core import hardware
from orchestrator.core.hardware import Accelerator

# Float slack for resource arithmetic: fractional CPUs summed and subtracted
# many times must not turn "exactly full" into "over by 1e-16".
EPS = 1e-6


@dataclass(frozen=True)
class Node:
    """One Ray node. ``total``/``free`` map Ray resource names to amounts."""

    name: str
    total: Mapping[str, float]
    free: Mapping[str, float]
    labels: Mapping[str, str] = field(default_factory=dict)
    node_id: str | None = None

    @property
    def ray_accelerator_type(self) -> str | None:
        """Ray's accelerator type ("A100", "TPU-V4"), from the label or the resource."""
        label = self.labels.get(hardware.LABEL_ACCELERATOR_TYPE)
        if label:
            return label
        prefix = hardware.ACCELERATOR_RESOURCE_PREFIX
        return next((key[len(prefix):] for key in self.total if key.startswith(prefix)), None)

    @property
    def device_key(self) -> str | None:
        """The Ray resource counting the node's accelerators (``GPU``, ``TPU``, ``neuron_cores``,
        ``HPU``...), else None."""
        for key in hardware.DEVICE_RESOURCES:
            if self.total.get(key, 0) > 0:
                return key
        return None


@dataclass(frozen=True)
class QueueConfig:
    """A named queue: what its jobs may hold (None = unlimited) and borrow in their cohort."""

    name: str
    quota: Mapping[str, float] | None = None
    cohort: str | None = None
    borrow: Mapping[str, float] | None = None

    def limit(self, resource: str) -> float | None:
        """The most of ``resource`` this queue's jobs may ever hold: quota plus borrow."""
        if self.quota is None or resource not in self.quota:
            return None
        return self.quota[resource] + (self.borrow or {}).get(resource, 0.0)


def default_queues() -> dict[str, QueueConfig]:
    return {"default": QueueConfig("default")}


@dataclass(frozen=True)
class NodeClass:
    """Nodes with the same totals, accelerator and slice shape: interchangeable when placing."""

    ray_type: str | None
    accelerator: Accelerator | None  # catalog, declared or learned type; None for CPU-only nodes
    device_key: str | None  # "GPU" | "TPU" | another of hardware.DEVICE_RESOURCES | None
    total: Mapping[str, float]
    members: tuple[int, ...]  # node positions in the snapshot
    pod_type: str | None  # TPU hosts: the slice type they belong to ("v4-16")
    multi_host: bool

    @property
    def primary(self) -> str:
        """The resource that is scarce on these nodes; free orderings sort by it."""
        return self.device_key or hardware.CPU


@dataclass(frozen=True)
class SliceGroup:
    """The hosts of one TPU slice, worker 0 first."""

    name: str
    pod_type: str
    topology: str | None
    members: tuple[int, ...]


class SnapshotIndex:
    """What never changes between allocations (totals and labels), computed once.

    Classes come in preference order: smallest sufficient hardware first, so a
    best-fit search keeps the big nodes free for big jobs.
    """

    def __init__(self, nodes: tuple[Node, ...], declared: Mapping[str, Accelerator] | None = None):
        self.position = {node.name: i for i, node in enumerate(nodes)}
        if len(self.position) != len(nodes):
            raise ValueError("node names in a snapshot must be unique")
        self.classes = _classify(nodes, declared or {})
        self.class_of = [0] * len(nodes)
        for cid, cls in enumerate(self.classes):
            for pos in cls.members:
                self.class_of[pos] = cid
        # CPU work may run anywhere, but CPU-only nodes first, then the cheapest accelerators.
        self.all_classes = tuple(sorted(range(len(self.classes)), key=lambda c: _cpu_rank(self.classes[c])))
        self.by_type: dict[str, tuple[int, ...]] = {}
        for cid, cls in enumerate(self.classes):
            if cls.device_key:
                key = cls.ray_type or cls.device_key
                self.by_type[key] = (*self.by_type.get(key, ()), cid)
        # GPU:N of any type tries the smallest, cheapest GPU types first.
        self.gpu_types = tuple(sorted(
            (t for t, cids in self.by_type.items() if self.classes[cids[0]].device_key == hardware.GPU),
            key=lambda t: _type_rank(self.classes[self.by_type[t][0]].accelerator),
        ))
        self.slices = _slices(nodes)
        # Every type the nodes have, catalogued or custom, by lower-case name and Ray type.
        self.types = hardware.by_name(cls.accelerator for cls in self.classes if cls.accelerator)
        # Allocator facts derived from totals alone may be cached here by the allocator.
        self.memo: dict = {}


def _classify(nodes: tuple[Node, ...], declared: Mapping[str, Accelerator]) -> tuple[NodeClass, ...]:
    groups: dict[tuple, list[int]] = {}
    for pos, node in enumerate(nodes):
        pod = node.labels.get(hardware.LABEL_TPU_POD_TYPE)
        key = (node.ray_accelerator_type, node.device_key, pod, tuple(sorted(node.total.items())))
        groups.setdefault(key, []).append(pos)
    classes = []
    for (ray_type, device_key, pod, _), members in groups.items():
        node = nodes[members[0]]
        hosts = _slice_hosts(pod)
        classes.append(NodeClass(
            ray_type=ray_type,
            accelerator=_type_of(ray_type, device_key, declared),
            device_key=device_key,
            total=dict(node.total),
            members=tuple(members),
            pod_type=pod,
            multi_host=hosts > 1,
        ))
    # Within a type: single-host machines before hosts of multi-host slices (keep
    # slices whole), then fewer devices, CPUs and memory first (best fit).
    classes.sort(key=lambda c: (c.multi_host, c.total.get(c.primary, 0), c.total.get(hardware.CPU, 0),
                                c.total.get(hardware.MEMORY, 0), c.members[0]))
    return tuple(classes)


def _type_of(ray_type: str | None, device_key: str | None, declared: Mapping[str, Accelerator]) -> Accelerator | None:
    """The catalog's type, else the cluster's declared one, else one learned from the node with
    unknown figures (a type nothing describes is still a type: ``X:N``, ``GPU:N`` and ``auto`` see
    it). A TPU generation outside the catalog stays unknown: slices need its shape."""
    if not ray_type:
        return None
    known = hardware.BY_RAY_TYPE.get(ray_type) or declared.get(ray_type)
    if known or not device_key or device_key == hardware.TPU:
        return known
    return hardware.learned(ray_type, device_key)


def _slice_hosts(pod_type: str | None) -> int:
    if not pod_type:
        return 0
    try:
        return hardware.parse_slice_name(pod_type).hosts
    except hardware.AcceleratorError:
        return 0


def _type_rank(acc: Accelerator | None) -> tuple:
    # Types of unknown memory go last (nothing says what fits), then those of unknown price.
    memory = acc.memory_gib if acc else None
    price = acc.price_per_hour if acc else None
    return (memory is None, memory or 0, price is None, price or 0)


def _cpu_rank(cls: NodeClass) -> tuple:
    known = cls.accelerator and cls.accelerator.price_per_hour is not None
    price = cls.accelerator.price_per_hour * cls.total.get(cls.primary, 0) if known else 0.0
    return (cls.device_key is not None, price, cls.total.get(hardware.CPU, 0),
            cls.total.get(hardware.MEMORY, 0), cls.members[0])


def _slices(nodes: tuple[Node, ...]) -> dict[str, tuple[SliceGroup, ...]]:
    """Group TPU hosts into slices by their slice-name label, hosts in worker-id order."""
    hosts: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for pos, node in enumerate(nodes):
        name = node.labels.get(hardware.LABEL_TPU_SLICE_NAME)
        pod = node.labels.get(hardware.LABEL_TPU_POD_TYPE)
        if name and pod:
            worker = int(node.labels.get(hardware.LABEL_TPU_WORKER_ID, "0"))
            hosts.setdefault((pod, name), []).append((worker, pos))
    by_pod: dict[str, list[SliceGroup]] = {}
    for (pod, name), members in sorted(hosts.items()):
        ordered = tuple(pos for _, pos in sorted(members))
        topology = nodes[ordered[0]].labels.get(hardware.LABEL_TPU_TOPOLOGY)
        by_pod.setdefault(pod, []).append(SliceGroup(name, pod, topology, ordered))
    return {pod: tuple(groups) for pod, groups in by_pod.items()}


@dataclass(frozen=True)
class ClusterSnapshot:
    """The cluster at one moment: nodes (total, free, labels), the queues, and the custom
    accelerator types its cluster file declares (Ray type -> type; the catalog's need no entry)."""

    name: str
    nodes: tuple[Node, ...]
    queues: Mapping[str, QueueConfig] = field(default_factory=default_queues)
    accelerators: Mapping[str, Accelerator] = field(default_factory=dict)

    @cached_property
    def index(self) -> SnapshotIndex:
        return SnapshotIndex(self.nodes, self.accelerators)

    def accelerator_types(self) -> list[Accelerator]:
        """The types its nodes have (catalogued, declared or learned) and those its file declares."""
        present = [cls.accelerator for cls in self.index.classes if cls.accelerator]
        return list({acc.ray_type: acc for acc in (*self.accelerators.values(), *present)}.values())

    def custom_types(self) -> list[Accelerator]:
        """Types outside the catalog: declared by the cluster file, or learned from its nodes."""
        return [acc for acc in self.accelerator_types() if acc.custom]

    def node(self, name: str) -> Node:
        return self.nodes[self.index.position[name]]

    def free_order(self, class_id: int) -> list[tuple[float, int]]:
        """(free amount of the class's primary resource, position) of its nodes, ascending."""
        orders = self.__dict__.setdefault("_free_orders", {})
        order = orders.get(class_id)
        if order is None:
            cls = self.index.classes[class_id]
            order = sorted((self.nodes[p].free.get(cls.primary, 0.0), p) for p in cls.members)
            orders[class_id] = order
        return order

    def free_sum(self, class_id: int) -> float:
        """Free amount of the class's primary resource over all its nodes."""
        sums = self.__dict__.setdefault("_free_sums", {})
        total = sums.get(class_id)
        if total is None:
            total = sums[class_id] = sum(value for value, _ in self.free_order(class_id))
        return total

    def allocate(self, demand: Mapping[str, Mapping[str, float]]) -> ClusterSnapshot:
        """A snapshot with ``demand`` (node name -> resources) taken from the free resources."""
        return self._adjust(demand, -1.0)

    def release(self, demand: Mapping[str, Mapping[str, float]]) -> ClusterSnapshot:
        """A snapshot with ``demand`` given back; the inverse of ``allocate``."""
        return self._adjust(demand, 1.0)

    def with_free(self, free: Mapping[str, Mapping[str, float]]) -> ClusterSnapshot:
        """A snapshot with the free resources of the named nodes replaced (a live refresh)."""
        nodes = list(self.nodes)
        for name, resources in free.items():
            pos = self._position(name)
            nodes[pos] = replace(nodes[pos], free=dict(resources))
        return self._derive(tuple(nodes), [self._position(name) for name in free])

    def _adjust(self, demand: Mapping[str, Mapping[str, float]], sign: float) -> ClusterSnapshot:
        nodes = list(self.nodes)
        for name, resources in demand.items():
            pos = self._position(name)
            node = nodes[pos]
            free = dict(node.free)
            for key, amount in resources.items():
                value = free.get(key, 0.0) + sign * amount
                limit = node.total.get(key, 0.0)
                if value < -EPS or value > limit + EPS:
                    verb = "take" if sign < 0 else "give back"
                    raise ValueError(f"cannot {verb} {amount:g} {key} on {name}: "
                                     f"free {free.get(key, 0.0):g} of {limit:g}")
                free[key] = min(max(value, 0.0), limit)
            nodes[pos] = replace(node, free=free)
        return self._derive(tuple(nodes), [self._position(name) for name in demand])

    def _position(self, name: str) -> int:
        try:
            return self.index.position[name]
        except KeyError:
            raise ValueError(f"no node {name!r} in snapshot {self.name!r}") from None

    def _derive(self, nodes: tuple[Node, ...], changed: Iterable[int]) -> ClusterSnapshot:
        """A snapshot sharing this one's index and patching only the touched free orderings."""
        derived = ClusterSnapshot(self.name, nodes, self.queues, self.accelerators)
        derived.__dict__["index"] = self.index  # totals and labels did not change
        orders = dict(self.__dict__.get("_free_orders", {}))
        sums = dict(self.__dict__.get("_free_sums", {}))
        for pos in set(changed):
            cid = self.index.class_of[pos]
            key = self.index.classes[cid].primary
            if cid in orders:
                orders[cid] = _moved(orders[cid], self.nodes[pos], nodes[pos], pos, key)
            if cid in sums:
                sums[cid] += nodes[pos].free.get(key, 0.0) - self.nodes[pos].free.get(key, 0.0)
        derived.__dict__["_free_orders"] = orders
        derived.__dict__["_free_sums"] = sums
        return derived


def _moved(order: list[tuple[float, int]], old: Node, new: Node, pos: int, key: str) -> list[tuple[float, int]]:
    """``order`` with node ``pos`` re-sorted by its new free amount (copy on write)."""
    patched = list(order)
    del patched[bisect.bisect_left(patched, (old.free.get(key, 0.0), pos))]
    bisect.insort(patched, (new.free.get(key, 0.0), pos))
    return patched


QUOTA_RESOURCES = (hardware.CPU, hardware.GPU, hardware.TPU, hardware.MEMORY)
