"""Cluster files (SPEC.md section 2): node types and queues, read and checked, as a snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from orchestrator.core import hardware
from orchestrator.core.errors import SpecError
from orchestrator.core.forms import Bytes, parse_bytes
from orchestrator.core.hardware import AcceleratorRequest, TpuSlice
from orchestrator.core.snapshot import QUOTA_RESOURCES, ClusterSnapshot, Node, QueueConfig, default_queues
from orchestrator.core.spec import NAME_PATTERN, Strict
from orchestrator.load.messages import field_problems
from orchestrator.load.reader import Words, load_documents

CLUSTER_FILE = Words("cluster file", "not valid YAML")
_CLUSTER_FIELDS = ("name", "nodes", "queues", "count", "cpus", "memory", "accelerator", "tpu_slice",
                   "labels", "quota", "cohort", "borrow")


def _parse_quantity(value: Any) -> float:
    """A quota amount: a number, or a size such as ``64GiB`` for memory."""
    if isinstance(value, str):
        return float(parse_bytes(value))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{value!r} is not an amount; write a number >= 0 (or a size such as 64GiB for memory)")
    return float(value)


Quantity = Annotated[float, BeforeValidator(_parse_quantity)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class NodeEntry(Strict):
    """One node type of a cluster file; ``count`` nodes named ``<name>-<index>``."""

    name: Name
    count: int = Field(1, ge=1)
    cpus: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    memory: Bytes
    accelerator: str | None = None
    tpu_slice: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> NodeEntry:
        self.devices()
        reserved = sorted(key for key in self.labels if key.startswith("ray.io/"))
        if reserved:
            raise ValueError(f"labels: {', '.join(reserved)} are set by orch from accelerator and tpu_slice")
        return self

    def devices(self) -> tuple[AcceleratorRequest | None, TpuSlice | None]:
        """The parsed accelerator and the slice type its hosts form (a single host is its own slice)."""
        request = hardware.parse_accelerator(self.accelerator) if self.accelerator else None
        if request and (request.kind not in ("gpu", "tpu") or request.type is None):
            raise ValueError(f"accelerator: {self.accelerator!r}; a node declares TYPE:COUNT such as A100:4 "
                             f"or TPU-v4:4 (slices go in tpu_slice)")
        if not self.tpu_slice:
            return request, _single_host_slice(request)
        tpu_slice = hardware.parse_slice_name(self.tpu_slice)
        acc, per_host = tpu_slice.accelerator, tpu_slice.chips_per_host
        request = request or AcceleratorRequest("tpu", count=per_host, type=acc)
        if request.type is not acc or request.count != per_host:
            raise ValueError(f"tpu_slice {self.tpu_slice!r}: its hosts have {acc.name}:{per_host}, "
                             f"but accelerator is {self.accelerator!r}")
        if self.count % tpu_slice.hosts:
            raise ValueError(f"count {self.count} is not a multiple of {tpu_slice.hosts}, "
                             f"the hosts of one {tpu_slice.pod_type} slice")
        return request, tpu_slice

    def expand(self) -> list[Node]:
        """The Ray nodes of this entry with the resources and labels real Ray nodes carry."""
        request, tpu_slice = self.devices()
        nodes = []
        for index in range(self.count):
            resources: dict[str, float] = {hardware.CPU: self.cpus, hardware.MEMORY: self.memory}
            labels = dict(self.labels)
            if request:
                resources[hardware.TPU if request.kind == "tpu" else hardware.GPU] = request.count
                resources[request.type.ray_resource] = 1
                labels[hardware.LABEL_ACCELERATOR_TYPE] = request.type.ray_type
            if tpu_slice:
                _add_slice_facts(resources, labels, tpu_slice, f"{self.name}-slice-{index // tpu_slice.hosts}",
                                 index % tpu_slice.hosts)
            nodes.append(Node(f"{self.name}-{index}", resources, dict(resources), labels))
        return nodes


def _single_host_slice(request: AcceleratorRequest | None) -> TpuSlice | None:
    """A TPU host outside any multi-host slice is a single-host slice (v4-8), as on GKE."""
    if not request or request.kind != "tpu":
        return None
    try:
        tpu_slice = hardware.parse_slice_name(f"{request.type.generation}-{request.count * request.type.slice_unit}")
    except hardware.AcceleratorError:
        return None
    return tpu_slice if tpu_slice.hosts == 1 and tpu_slice.chips == request.count else None


def _add_slice_facts(resources: dict, labels: dict, tpu_slice: TpuSlice, slice_name: str, worker: int) -> None:
    labels[hardware.LABEL_TPU_SLICE_NAME] = slice_name
    labels[hardware.LABEL_TPU_WORKER_ID] = str(worker)
    labels[hardware.LABEL_TPU_TOPOLOGY] = tpu_slice.topology
    labels[hardware.LABEL_TPU_POD_TYPE] = tpu_slice.pod_type
    if worker == 0:
        resources[tpu_slice.head_resource] = 1


class QueueEntry(Strict):
    quota: dict[str, Quantity] | None = None
    cohort: Name | None = None
    borrow: dict[str, Quantity] | None = None

    @model_validator(mode="after")
    def _known(self) -> QueueEntry:
        for section in ("quota", "borrow"):
            unknown = sorted(set(getattr(self, section) or {}) - set(QUOTA_RESOURCES))
            if unknown:
                raise ValueError(f"{section}: unknown resource {', '.join(map(repr, unknown))}; "
                                 f"use {', '.join(QUOTA_RESOURCES)}")
        if self.borrow and not self.cohort:
            raise ValueError("borrow needs a cohort: a queue borrows what others of its cohort leave unused")
        return self


class ClusterFile(Strict):
    """A cluster file: node types and queues."""

    name: Name
    nodes: Annotated[list[NodeEntry], Field(min_length=1)]
    queues: dict[Name, QueueEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> ClusterFile:
        names = [entry.name for entry in self.nodes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"nodes: {', '.join(twice)} listed twice; node entry names must be unique")
        return self


def load_cluster_file(path: str | Path) -> ClusterFile:
    """Read and validate a cluster file; problems raise ``SpecError`` naming the field."""
    path = Path(path)
    documents = load_documents(path, CLUSTER_FILE, one=True)
    try:
        return ClusterFile.model_validate(documents[0] if documents else None)
    except ValidationError as error:
        raise SpecError(field_problems(error, "(top level)", _CLUSTER_FIELDS), source=str(path)) from None


def snapshot_from_cluster(cluster: ClusterFile) -> ClusterSnapshot:
    """The snapshot of a cluster file's nodes, all resources free; queue ``default`` always exists."""
    nodes = tuple(node for entry in cluster.nodes for node in entry.expand())
    queues = default_queues()
    for name, entry in cluster.queues.items():
        queues[name] = QueueConfig(name, entry.quota, entry.cohort, entry.borrow)
    return ClusterSnapshot(cluster.name, nodes, queues)


def read_cluster(path: str | Path) -> ClusterSnapshot:
    """The snapshot of the cluster file at ``path``; problems raise ``SpecError``."""
    return snapshot_from_cluster(load_cluster_file(path))


def queues_of(path: str | Path | None) -> dict[str, QueueConfig]:
    """The queues of the cluster file a cluster was started from; ``default`` alone without one."""
    if path and Path(path).exists():
        return dict(read_cluster(path).queues)
    return default_queues()
