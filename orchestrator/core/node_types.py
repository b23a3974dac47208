"""The node types of a max-scale snapshot (the largest cluster Ray's autoscaler may grow to), the
live nodes matched to them, and snapshots grown by *virtual* nodes of those types. PURE.

Used by ``autoscale``, whose docstring tells how nodes are matched and named.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from orchestrator.core import hardware
from orchestrator.core.protocol import type_name
from orchestrator.core.snapshot import EPS, ClusterSnapshot, Node, QueueConfig

NEW = "/new-"  # virtual node names: "<type>/new-<k>"; "/" is in no real node's name
NODE_GROUP_LABEL = "ray.io/node-group"  # Ray's label for the node type it launched a node as
KUBERAY_HEAD_GROUP = "headgroup"  # the head's node type as KubeRay's autoscaler names it


@dataclass(frozen=True)
class NodeType:
    """One node type of the config: its max-scale nodes, in index order."""

    name: str
    nodes: tuple[Node, ...]
    hosts: int  # Ray nodes per launch: the hosts of one multi-host slice, else 1
    head: bool

    @property
    def devices(self) -> bool:
        return self.nodes[0].device_key is not None

    @property
    def what(self) -> str:
        """What one launch of this type is: ``A100 node``, ``CPU node``, ``TPU-v4-16 slice``."""
        node = self.nodes[0]
        if self.hosts > 1:
            return f"{hardware.parse_slice_name(node.labels[hardware.LABEL_TPU_POD_TYPE]).name} slice"
        ray_type = node.ray_accelerator_type
        acc = hardware.BY_RAY_TYPE.get(ray_type) if ray_type else None  # custom types go by their Ray type
        return f"{acc.name if acc else ray_type or 'CPU'} node"


def node_types(max_scale: ClusterSnapshot) -> dict[str, NodeType]:
    """The config's node types by name (nodes are ``<type>-<index>``), the head's first."""
    memo = max_scale.index.memo
    found = memo.get("autoscale: node types")
    if found is None:
        grouped: dict[str, list[Node]] = {}
        for node in max_scale.nodes:
            grouped.setdefault(node.name.rsplit("-", 1)[0], []).append(node)
        found = {}
        for i, (name, nodes) in enumerate(grouped.items()):
            pod = nodes[0].labels.get(hardware.LABEL_TPU_POD_TYPE)
            hosts = hardware.parse_slice_name(pod).hosts if pod else 1
            found[name] = NodeType(name, tuple(nodes), hosts, head=i == 0)
        memo["autoscale: node types"] = found
    return found


def type_of(node: Node, types: Mapping[str, NodeType]) -> str | None:
    """The node type ``node`` is (or, for a virtual node, will be); None when none matches."""
    if NEW in node.name:
        kind = node.name.split(NEW, 1)[0]
        if kind in types:
            return kind
    group = node.labels.get(NODE_GROUP_LABEL)
    if group:
        kind = type_name(group)
        if kind in types:
            return kind
        if group == KUBERAY_HEAD_GROUP:
            return next(iter(types))
    shape = _signature(node)
    candidates = [t for t in types.values() if _signature(t.nodes[0]) == shape]
    if not candidates:
        return None

    def closeness(t: NodeType) -> tuple:
        model = t.nodes[0].total
        return tuple(abs(model.get(k, 0.0) - node.total.get(k, 0.0)) <= EPS
                     for k in (hardware.CPU, hardware.MEMORY)) + (not t.head,)

    return max(candidates, key=closeness).name  # the first of equals, in the config's order


def _signature(node: Node) -> tuple:
    key = node.device_key
    return (node.ray_accelerator_type if key else None, key, node.total.get(key, 0.0) if key else 0.0,
            node.labels.get(hardware.LABEL_TPU_POD_TYPE))


def virtual(kind: NodeType, k: int, total: Mapping[str, float] | None = None) -> Node:
    """New node ``k`` of ``kind``: a max-scale node's resources and labels, all free."""
    model = kind.nodes[k % kind.hosts]
    labels = dict(model.labels)
    if hardware.LABEL_TPU_SLICE_NAME in labels:
        labels[hardware.LABEL_TPU_SLICE_NAME] = f"{kind.name}{NEW}slice-{k // kind.hosts}"
    resources = dict(total if total is not None else model.total)
    return Node(f"{kind.name}{NEW}{k}", resources, dict(resources), labels)


def counts(snapshot: ClusterSnapshot, types: Mapping[str, NodeType]) -> tuple[Counter, dict[str, Node]]:
    """Nodes per type in ``snapshot`` (the head counted always) and one existing node per type."""
    used: Counter = Counter()
    sample: dict[str, Node] = {}
    for node in snapshot.nodes:
        kind = type_of(node, types)
        if kind:
            used[kind] += 1
            if NEW not in node.name:
                sample.setdefault(kind, node)
    head = next(iter(types))
    used[head] = max(used[head], 1)
    return used, sample


def grow(snapshot: ClusterSnapshot, max_scale: ClusterSnapshot, devices: bool = True) -> ClusterSnapshot:
    """``snapshot`` plus, free, every node the autoscaler may still add (``devices=False``:
    only of types without GPUs or TPUs). Single-host types take the resources Ray reports
    for their existing nodes, so new and existing nodes of a type plan alike."""
    types = node_types(max_scale)
    used, sample = counts(snapshot, types)
    taken = {node.name for node in snapshot.nodes}
    extra: list[Node] = []
    for kind in types.values():
        if kind.devices and not devices:
            continue
        room = max(len(kind.nodes) - used[kind.name], 0) // kind.hosts
        total = sample[kind.name].total if kind.hosts == 1 and kind.name in sample else None
        for ks in itertools.islice(_fresh(kind, taken), room):
            extra += [virtual(kind, k, total) for k in ks]
    if not extra:
        return snapshot
    return ClusterSnapshot(snapshot.name, snapshot.nodes + tuple(extra), snapshot.queues, snapshot.accelerators)


def _fresh(kind: NodeType, taken: set[str]) -> Iterator[list[int]]:
    """Indices of new launches of ``kind`` (a slice's hosts together) whose names are unused."""
    for launch in itertools.count():
        ks = [launch * kind.hosts + h for h in range(kind.hosts)]
        if not any(f"{kind.name}{NEW}{k}" in taken for k in ks):
            yield ks


def at_max_scale(max_scale: ClusterSnapshot, queues: Mapping[str, QueueConfig]) -> ClusterSnapshot:
    """The max-scale snapshot with the live cluster's queues (configs carry none)."""
    if max_scale.queues == queues:
        return max_scale
    return ClusterSnapshot(max_scale.name, max_scale.nodes, dict(queues), max_scale.accelerators)


def describe(nodes: Iterable[str], types: Mapping[str, NodeType]) -> str | None:
    """``2 x A100 node (a100-pool)`` for the virtual nodes among ``nodes``; None when there are none."""
    hosts: dict[str, set[str]] = {}
    for name in nodes:
        if NEW in name:
            kind = name.split(NEW, 1)[0]
            if kind in types:
                hosts.setdefault(kind, set()).add(name)
    if not hosts:
        return None
    parts = []
    for kind, names in hosts.items():
        t = types[kind]
        launches = -(-len(names) // t.hosts)
        parts.append(f"{launches} x {t.what} ({kind})")
    return ", ".join(parts)
