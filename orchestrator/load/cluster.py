"""Cluster files (SPEC.md section 2): node types, custom accelerator types and queues, read and
checked (problems at their line and column), as a snapshot; and the queues of a file alone
(``orch serve --queues``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from orchestrator.core import hardware
from orchestrator.core.errors import SpecError
from orchestrator.core.forms import Bytes, parse_bytes
from orchestrator.core.hardware import Accelerator, AcceleratorRequest, TpuSlice
from orchestrator.core.snapshot import QUOTA_RESOURCES, ClusterSnapshot, Node, QueueConfig, default_queues
from orchestrator.core.spec import Strict
from orchestrator.core.spec_words import NAME_PATTERN
from orchestrator.core.suggest import did_you_mean
from orchestrator.load.messages import Report, field_line
from orchestrator.load.reader import Words, load_documents

CLUSTER_FILE = Words("cluster file", "not valid YAML")
QUEUES_FILE = Words("queues file", "not valid YAML")
_CLUSTER_FIELDS = ("name", "nodes", "queues", "accelerators", "count", "cpus", "memory", "accelerator",
                   "tpu_slice", "labels", "quota", "cohort", "borrow", "family", "ray_type", "bf16_tflops",
                   "fp32_tflops", "price")
_CUSTOM = "custom"  # validation context: the file's custom types, by lower-case name (hardware.by_name)


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

    @field_validator("accelerator")
    @classmethod
    def _known_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        """In a file, a type outside the catalog must be one of its ``accelerators:``."""
        custom = (info.context or {}).get(_CUSTOM)
        if value and custom is not None:
            hardware.parse_accelerator(value, custom)
        return value

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

    def expand(self, custom: dict[str, Accelerator] | None = None) -> list[Node]:
        """The Ray nodes of this entry with the resources and labels real Ray nodes carry;
        ``custom`` (``hardware.by_name``) describes the types outside the catalog."""
        request, tpu_slice = self.devices()
        acc = request and (custom or {}).get(request.type.name.lower(), request.type)
        nodes = []
        for index in range(self.count):
            resources: dict[str, float] = {hardware.CPU: self.cpus, hardware.MEMORY: self.memory}
            labels = dict(self.labels)
            if request:
                resources[acc.resource] = request.count
                resources[acc.ray_resource] = 1
                labels[hardware.LABEL_ACCELERATOR_TYPE] = acc.ray_type
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


CUSTOM_FAMILIES = tuple(f for f in hardware.FAMILIES if f != "tpu")  # TPU generations: the catalog's only
TypeName = Annotated[str, Field(pattern=hardware.CUSTOM_NAME.pattern)]
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class AcceleratorEntry(Strict):
    """A custom accelerator type: one outside orch's catalog, and what is known of it (SPEC.md
    section 2). Figures left out are unknown: plans then rank the type after known ones."""

    name: TypeName
    family: Literal[CUSTOM_FAMILIES]
    ray_type: TypeName | None = None  # Ray's accelerator_type value, when it is not the name
    memory: Bytes | None = None  # per device
    bf16_tflops: Amount | None = None  # dense peak
    fp32_tflops: Amount | None = None
    price: Amount | None = None  # USD per device-hour

    @model_validator(mode="after")
    def _not_catalogued(self) -> AcceleratorEntry:
        for key in (self.name, self.ray_type):
            known = hardware.BY_NAME.get((key or "").lower())
            if known:
                raise ValueError(f"{key!r} is in orch's catalog (as {known.name}); leave it out of accelerators:")
        return self

    def accelerator(self) -> Accelerator:
        memory = self.memory / hardware.GIB if self.memory is not None else None
        return hardware.declared(self.name, self.family, self.ray_type, memory, self.bf16_tflops,
                                 self.fp32_tflops, self.price)


class QueuesFile(Strict):
    """The queues alone (``orch serve --queues``): a cluster file's ``queues:`` section."""

    queues: dict[Name, QueueEntry]


class ClusterFile(Strict):
    """A cluster file: custom accelerator types, node types and queues."""

    name: Name
    accelerators: list[AcceleratorEntry] = Field(default_factory=list)
    nodes: Annotated[list[NodeEntry], Field(min_length=1)]
    queues: dict[Name, QueueEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> ClusterFile:
        for what, names in (("nodes", [entry.name for entry in self.nodes]),
                            ("accelerators", [entry.name.lower() for entry in self.accelerators])):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{what}: {', '.join(twice)} listed twice; names must be unique")
        custom = self.custom_types()
        for entry in self.nodes:  # a file's reader checks this per field, with its place (_known_type)
            if entry.accelerator:
                hardware.parse_accelerator(entry.accelerator, custom)
        return self

    def custom_types(self) -> dict[str, Accelerator]:
        """The declared types by lower-case name and Ray type (``hardware.by_name``)."""
        return hardware.by_name(entry.accelerator() for entry in self.accelerators)


def load_cluster_file(path: str | Path) -> ClusterFile:
    """Read and validate a cluster file; problems raise ``SpecError`` at their line and column."""
    return _validated(Path(path), CLUSTER_FILE, ClusterFile)


def load_queues_file(path: str | Path) -> dict[str, QueueConfig]:
    """The queues of a file holding a ``queues:`` section alone, or of a whole cluster file
    (its nodes then checked too); ``default`` always exists. Problems raise ``SpecError``."""
    path = Path(path)
    documents = load_documents(path, QUEUES_FILE, one=True)
    if isinstance(documents[0] if documents else None, dict) and "nodes" in documents[0]:
        return _queues(load_cluster_file(path).queues)
    return _queues(_validated(path, QUEUES_FILE, QueuesFile).queues)


def _validated(path: Path, words: Words, model: type[Strict]):
    report = Report()
    documents = load_documents(path, words, one=True, report=report)
    data = documents[0] if documents else None
    context = None
    if isinstance(data, dict) and isinstance(data.get("accelerators"), list):
        try:  # the declared types first: the nodes' types are checked against them
            context = {_CUSTOM: ClusterFile.model_construct(accelerators=[
                AcceleratorEntry.model_validate(item) for item in data["accelerators"]]).custom_types()}
        except ValidationError:
            context = None  # reported below, with the rest
    try:
        return model.model_validate(data, context=context or {_CUSTOM: {}})
    except ValidationError as error:
        raise SpecError(_placed(error, report, str(path)), source=str(path), details=report.details) from None


def _placed(error: ValidationError, report: Report, source: str) -> list[str]:
    """pydantic's errors as ``FILE:LINE:COL: field.path: message`` lines (SPEC.md's form)."""
    for found in error.errors():
        path = tuple(part for part in found["loc"] if part != "[key]")
        message = found["msg"].removeprefix("Value error, ")
        if found["type"] == "extra_forbidden":
            message = "unknown field" + did_you_mean(str(path[-1]), _CLUSTER_FIELDS)
        where = report.where(path, key=found["type"] == "extra_forbidden") if report.positions else source
        report.add(where, path, message)
    return report.problems or [field_line(source, (), "the file is empty; a cluster file needs name and nodes")]


def _queues(entries: dict[str, QueueEntry]) -> dict[str, QueueConfig]:
    queues = default_queues()
    for name, entry in entries.items():
        queues[name] = QueueConfig(name, entry.quota, entry.cohort, entry.borrow)
    return queues


def snapshot_from_cluster(cluster: ClusterFile) -> ClusterSnapshot:
    """The snapshot of a cluster file's nodes, all resources free; queue ``default`` always exists;
    the declared custom types ride along (the allocator learns their figures from them)."""
    custom = cluster.custom_types()
    nodes = tuple(node for entry in cluster.nodes for node in entry.expand(custom))
    declared = {acc.ray_type: acc for acc in custom.values()}
    return ClusterSnapshot(cluster.name, nodes, _queues(cluster.queues), declared)


def read_cluster(path: str | Path) -> ClusterSnapshot:
    """The snapshot of the cluster file at ``path``; problems raise ``SpecError``."""
    return snapshot_from_cluster(load_cluster_file(path))


def queues_of(path: str | Path | None) -> dict[str, QueueConfig]:
    """The queues of the cluster (or queues) file a cluster was started from; ``default`` alone
    without one."""
    if path and Path(path).exists():
        return load_queues_file(path)
    return default_queues()


def accelerators_of(path: str | Path | None) -> dict[str, Accelerator]:
    """The custom types an orch cluster file declares (Ray type -> type), for a live snapshot."""
    if path and Path(path).exists() and "nodes" in (load_documents(Path(path), CLUSTER_FILE, one=True) or [{}])[0]:
        return {acc.ray_type: acc for acc in load_cluster_file(path).custom_types().values()}
    return {}
