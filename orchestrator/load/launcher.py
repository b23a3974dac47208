"""Real cluster configs as snapshots: Ray cluster launcher YAML and KubeRay RayCluster manifests.

PURE: json and yaml only; Ray is never imported (its launcher schema is read as a
file from the installed ``ray`` package). A snapshot describes the cluster at its
largest, every node type at its maximum (a launcher type's ``max_workers``, a
KubeRay group's ``maxReplicas`` x ``numOfHosts``) plus the head, all free, so that
``allocator.plan(spec, snapshot)`` answers "can this job ever run there, and on
what?" before any node exists.

The head comes first: its type is the first node type of every snapshot read here
(``autoscale`` relies on it: the head always exists, and no autoscaler launches one).

Every node type becomes an orch cluster-file entry (``snapshot.NodeEntry``), so the
Ray resource and label names of the nodes come from the one place that defines them
(``NodeEntry.expand``), exactly as ``orch up --cluster`` simulates them. Only CPU,
memory, GPU and TPU are planned: other custom resources (``orch_driver``) are not
carried into the snapshot.
"""

from __future__ import annotations

import decimal
import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from orchestrator.core import hardware
from orchestrator.core.errors import SpecError
from orchestrator.core.protocol import type_name
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.load.cluster import AcceleratorEntry, ClusterFile, NodeEntry, load_cluster_file, snapshot_from_cluster
from orchestrator.load.validation import field_problems
from orchestrator.load.reader import Words, load_documents

# ray.io/ labels orch derives from the accelerator and slice; a config may declare them, and must agree.
_DERIVED_LABELS = (hardware.LABEL_ACCELERATOR_TYPE, hardware.LABEL_TPU_POD_TYPE, hardware.LABEL_TPU_TOPOLOGY)
# Ray sets these per host of a slice (from the TPU VM or GKE pod); one declaration cannot be right for all hosts.
_PER_HOST_LABELS = (hardware.LABEL_TPU_SLICE_NAME, hardware.LABEL_TPU_WORKER_ID)

# GKE TPU node selectors -> slice names (as Ray's KubeRay autoscaler reads them); chips from the topology.
GKE_TPU_ACCELERATOR = "cloud.google.com/gke-tpu-accelerator"
GKE_TPU_TOPOLOGY = "cloud.google.com/gke-tpu-topology"
_GKE_TPU_GENERATION = {"tpu-v4-podslice": "v4", "tpu-v5-lite-podslice": "v5litepod",
                       "tpu-v5p-slice": "v5p", "tpu-v6e-slice": "v6e"}
# GCP launcher `acceleratorConfig.type` -> slice name prefix.
_GCP_TPU_GENERATION = {"V4": "v4", "V5LITE_POD": "v5litepod", "V5P": "v5p", "V6E": "v6e"}
# Kubernetes resource names of the Ray container -> Ray resources (Ray's autoscaler reads the same).
_K8S_RESOURCES = ((hardware.CPU, "cpu"), (hardware.MEMORY, "memory"), (hardware.GPU, "nvidia.com/gpu"),
                  (hardware.TPU, "google.com/tpu"))
_K8S_SUFFIX = {"m": decimal.Decimal("0.001"), "": decimal.Decimal(1),
               **{s: decimal.Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")},
               **{s + "i": decimal.Decimal(1024) ** (i + 1) for i, s in enumerate("KMGTPE")}}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]{0,2})\s*$")


class _Problem(ValueError):
    """One error in a node type, reported with the field path it is about."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")


# ---- reading and validating ------------------------------------------------------


CLUSTER_CONFIG = Words("cluster config", "not valid YAML")


def _documents(path: Path) -> list[Any]:
    return load_documents(path, CLUSTER_CONFIG)


def ray_schema_path() -> Path:
    """Ray's own launcher schema, ``ray/autoscaler/ray-schema.json``, located without importing Ray."""
    spec = importlib.util.find_spec("ray")  # finds the package; does not run ray/__init__.py
    if spec is None or not spec.submodule_search_locations:
        raise SpecError("Ray is not installed here, so its cluster launcher schema cannot be read")
    return Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"


def validate_launcher(path: str | Path) -> dict[str, Any]:
    """Check a launcher YAML against Ray's shipped schema and Ray's own cross-field rules.

    Returns the config. Every problem is reported at once, each with its field path,
    as ``SpecError`` (the same checks ``ray up`` makes before it creates anything).
    """
    path = Path(path)
    docs = _documents(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise SpecError("a cluster launcher config is one YAML mapping (cluster_name, provider, ...)",
                        source=str(path))
    config = docs[0]
    import jsonschema  # Ray depends on it; imported here so `import orchestrator` stays light

    schema = json.loads(ray_schema_path().read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path)))
    problems = [f"{'.'.join(map(str, e.path)) or '(top level)'}: {e.message}" for e in errors]
    types = config.get("available_node_types")
    if not problems and isinstance(types, dict):
        # What ray.autoscaler._private.util.validate_config checks beyond the schema.
        head = config.get("head_node_type")
        if head not in types:
            problems.append(f"head_node_type: {head!r} must name one of available_node_types "
                            f"({', '.join(types)})")
        minimum = sum(t.get("min_workers", 0) for t in types.values())
        if "max_workers" in config and minimum > config["max_workers"]:
            problems.append(f"max_workers: {config['max_workers']} is less than the node types' "
                            f"min_workers together ({minimum})")
    elif not problems:
        problems.append("available_node_types: missing; orch reads the node types from it")
    if problems:
        raise SpecError(problems, source=str(path))
    return config


# ---- launcher YAML -> snapshot -----------------------------------------------------


def snapshot_from_launcher(path: str | Path) -> ClusterSnapshot:
    """The snapshot of a Ray cluster launcher config at max scale (validated first).

    Per node type: ``max_workers`` nodes (Ray's default: the global ``max_workers``,
    0 for the head type, and never more than the global cap), plus one for the head.
    A TPU type whose ``node_config`` names a multi-host slice (``acceleratorType:
    v4-16``) is one launcher node per slice, so each worker adds that slice's hosts.
    """
    path = Path(path)
    config = validate_launcher(path)
    cap = config.get("max_workers")
    head = config["head_node_type"]
    entries, problems = [], []
    types = config["available_node_types"]
    for key in sorted(types, key=lambda k: k != head):  # the head first, then the config's order
        node_type, where = types[key], f"available_node_types.{key}"
        default = 0 if key == head else cap
        workers = node_type.get("max_workers", default)
        if workers is None:
            problems.append(f"{where}.max_workers: missing, and there is no global max_workers to default to")
            continue
        workers = min(workers, cap) if cap is not None else workers
        try:
            pod_type = _gcp_tpu_slice(node_type["node_config"], where)
            hosts = hardware.parse_slice_name(pod_type).hosts if pod_type else 1
            count = (1 if key == head else 0) + workers * hosts
            if count:
                entries.append(_entry(key, count, node_type["resources"], node_type.get("labels") or {},
                                      pod_type, where))
        except _Problem as error:
            problems.append(str(error))
        except ValueError as error:  # a slice name the catalog refuses
            problems.append(f"{where}.node_config: {error}")
    return _snapshot(config.get("cluster_name") or path.stem, entries, problems, path)


def _gcp_tpu_slice(node_config: Mapping[str, Any], where: str) -> str | None:
    """The slice a GCP TPU node type creates: ``acceleratorType: v4-16`` or ``acceleratorConfig``."""
    if "acceleratorType" in node_config:
        return str(node_config["acceleratorType"])
    accel = node_config.get("acceleratorConfig")
    if not accel:
        return None
    generation = _GCP_TPU_GENERATION.get(str(accel.get("type", "")).upper())
    if generation is None:
        raise _Problem(f"{where}.node_config.acceleratorConfig.type",
                       f"{accel.get('type')!r} is not one of {', '.join(_GCP_TPU_GENERATION)}")
    return _slice_of(generation, str(accel.get("topology", "")), f"{where}.node_config.acceleratorConfig")


def _slice_of(generation: str, topology: str, where: str) -> str:
    """``v4`` + ``2x2x2`` -> ``v4-16``: the name counts TensorCores on v4/v5p, chips on v5e/v6e."""
    try:
        chips = math.prod(int(side) for side in topology.lower().split("x"))
    except ValueError:
        raise _Problem(where, f"topology {topology!r} is not a chip grid such as 2x2x2 or 4x4") from None
    return f"{generation}-{chips * hardware.BY_NAME[generation].slice_unit}"


# ---- KubeRay RayCluster -> snapshot ------------------------------------------------


def snapshot_from_raycluster(path: str | Path) -> ClusterSnapshot:
    """The snapshot of a KubeRay ``RayCluster`` (``ray.io/v1``) at max scale.

    The head is one node; a worker group is ``maxReplicas`` x ``numOfHosts`` nodes.
    Each group's Ray resources are read the way Ray's KubeRay autoscaler reads them:
    the group's ``resources`` field, else ``rayStartParams`` (``num-cpus``,
    ``num-gpus``, ``memory``, ``resources``), then the Ray container's limits (else
    requests) for whatever is still missing. Labels come from the group's ``labels``.
    """
    path = Path(path)
    clusters = [d for d in _documents(path) if isinstance(d, dict) and d.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        raise SpecError(f"expected one RayCluster document, found {len(clusters)}", source=str(path))
    doc = clusters[0]
    if doc.get("apiVersion") != "ray.io/v1":
        raise SpecError(f"apiVersion: {doc.get('apiVersion')!r}; orch reads ray.io/v1 RayClusters",
                        source=str(path))
    spec = doc.get("spec") or {}
    groups = [("head", "spec.headGroupSpec", spec.get("headGroupSpec"), True)]
    groups += [(g.get("groupName") if isinstance(g, dict) else None, f"spec.workerGroupSpecs[{i}]", g, False)
               for i, g in enumerate(spec.get("workerGroupSpecs") or [])]
    entries, problems = [], []
    for name, where, group, is_head in groups:
        try:
            entry = _group_entry(name, where, group, is_head)
            if entry:
                entries.append(entry)
        except _Problem as error:
            problems.append(str(error))
        except ValueError as error:  # a slice name the catalog refuses
            problems.append(f"{where}: {error}")
    return _snapshot((doc.get("metadata") or {}).get("name") or path.stem, entries, problems, path)


def _group_entry(name: str | None, where: str, group: Any, is_head: bool) -> NodeEntry | None:
    if not isinstance(group, dict):
        raise _Problem(where, "missing; a RayCluster needs a headGroupSpec" if is_head else "not a mapping")
    if not name:
        raise _Problem(f"{where}.groupName", "missing; every worker group is named")
    params = group.get("rayStartParams") or {}
    if "labels" in params:  # KubeRay 1.5+ refuses it; Ray's autoscaler ignores it
        raise _Problem(f"{where}.rayStartParams.labels", "not supported; put Ray node labels in the "
                       "group's top-level labels field (KubeRay 1.5+)")
    labels = group.get("labels") or {}
    pod_type = labels.get(hardware.LABEL_TPU_POD_TYPE) or _gke_tpu_slice(group, where)
    hosts = 1 if is_head else int(group.get("numOfHosts", 1))
    if pod_type and not is_head:
        slice_hosts = hardware.parse_slice_name(pod_type).hosts
        if hosts != slice_hosts:
            raise _Problem(f"{where}.numOfHosts", f"{hosts}, but one {pod_type} slice has {slice_hosts} hosts; "
                           "each replica is one whole slice")
    if not is_head and not isinstance(group.get("maxReplicas"), int):
        raise _Problem(f"{where}.maxReplicas", "set it: orch plans against the most nodes the group can have "
                       "(KubeRay's default is 2^31-1)")
    count = 1 if is_head else group["maxReplicas"] * hosts
    if not count:
        return None
    return _entry(name, count, _group_resources(group, where), labels, pod_type, where)


def _group_resources(group: Mapping[str, Any], where: str) -> dict[str, float]:
    declared = group.get("resources") or {}
    params = group.get("rayStartParams") or {}
    if declared:  # KubeRay: the top-level field, when set, is the only declaration
        resources = {key: _quantity(value, f"{where}.resources.{key}") for key, value in declared.items()}
    else:
        resources = {key: _quantity(params[param], f"{where}.rayStartParams.{param}")
                     for key, param in ((hardware.CPU, "num-cpus"), (hardware.GPU, "num-gpus"),
                                        (hardware.MEMORY, "memory")) if param in params}
        if "resources" in params:
            resources.update(_start_param_resources(params["resources"], f"{where}.rayStartParams.resources"))
    try:
        container = group["template"]["spec"]["containers"][0].get("resources") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _Problem(f"{where}.template.spec.containers", "missing; the Ray container comes first") from None
    for key, k8s_name in _K8S_RESOURCES:
        value = (container.get("limits") or {}).get(k8s_name) or (container.get("requests") or {}).get(k8s_name)
        if key not in resources and value is not None:
            resources[key] = _quantity(value, f"{where}.template.spec.containers[0].resources.limits.{k8s_name}")
    return resources


def _start_param_resources(text: str, where: str) -> dict[str, float]:
    """``'"{\\"TPU\\": 4}"'`` (KubeRay's quoted JSON) -> ``{"TPU": 4}``."""
    try:
        value = json.loads(str(text).strip().strip("'\"").replace("\\", ""))
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise _Problem(where, f"{text!r} is not a JSON object of resource amounts such as '{{\"TPU\": 4}}'")
    return {key: _quantity(amount, f"{where}.{key}") for key, amount in value.items()}


def _gke_tpu_slice(group: Mapping[str, Any], where: str) -> str | None:
    selector = ((group.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    accelerator, topology = selector.get(GKE_TPU_ACCELERATOR), selector.get(GKE_TPU_TOPOLOGY)
    if not accelerator or not topology:
        return None
    generation = _GKE_TPU_GENERATION.get(accelerator)
    if generation is None:
        raise _Problem(f"{where}.template.spec.nodeSelector.{GKE_TPU_ACCELERATOR}",
                       f"{accelerator!r} is not one of {', '.join(_GKE_TPU_GENERATION)}")
    return _slice_of(generation, topology, f"{where}.template.spec.nodeSelector.{GKE_TPU_TOPOLOGY}")


def _quantity(value: Any, where: str) -> float:
    """A Kubernetes quantity (``500m``, ``64Gi``, ``4``) rounded up to an integer, as Ray's autoscaler does."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(math.ceil(value))
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _K8S_SUFFIX:
        raise _Problem(where, f"{value!r} is not a quantity such as 4, 500m or 64Gi")
    return float(math.ceil(decimal.Decimal(match.group(1)) * _K8S_SUFFIX[match.group(2)]))


# ---- shared: one node type -> a cluster-file entry ---------------------------------


def _entry(key: str, count: int, resources: Mapping[str, float], labels: Mapping[str, str],
           pod_type: str | None, where: str) -> NodeEntry:
    """An orch node entry for ``count`` nodes of one type, checked against what Ray will report."""
    missing = [name for name in (hardware.CPU, hardware.MEMORY) if name not in resources]
    if missing:
        raise _Problem(f"{where}.resources", f"declare {' and '.join(missing)}: orch plans CPU and memory "
                       "(bytes) per node, and Ray fills in undeclared amounts only once a node runs")
    heads = sorted(k for k in resources if k.startswith("TPU-") and k.endswith("-head"))
    if heads:
        raise _Problem(f"{where}.resources", f"{heads[0]}: Ray puts it on worker 0 of each slice itself; "
                       "declared here, every host would carry one")
    per_host = sorted(k for k in labels if k in _PER_HOST_LABELS)
    if per_host:
        raise _Problem(f"{where}.labels", f"{per_host[0]}: Ray sets it on each host of a slice; do not declare it")
    accelerator = _accelerator(resources, labels, where)
    if pod_type and not (accelerator or "").startswith("TPU-"):
        raise _Problem(f"{where}.resources", f"its nodes are {pod_type} TPU hosts: declare TPU (chips per host) "
                       f"and the type, e.g. the label {hardware.LABEL_ACCELERATOR_TYPE}: TPU-V4")
    name = type_name(key)
    try:
        entry = NodeEntry(name=name, count=count, cpus=float(resources[hardware.CPU]),
                          memory=int(resources[hardware.MEMORY]), accelerator=accelerator,
                          tpu_slice=pod_type,
                          labels={k: v for k, v in labels.items() if not k.startswith("ray.io/")})
    except ValidationError as error:
        raise _Problem(where, "; ".join(field_problems(error))) from None
    derived = entry.expand()[0].labels
    for label in _DERIVED_LABELS:
        if label in labels and labels[label] != derived.get(label):
            raise _Problem(f"{where}.labels.{label}", f"{labels[label]!r}, but the node's hardware makes it "
                           f"{derived.get(label)!r}")
    return entry


def _accelerator(resources: Mapping[str, float], labels: Mapping[str, str], where: str) -> str | None:
    """``A100:4`` or ``TPU-v4:4`` from GPU/TPU counts and the accelerator type (label or resource)."""
    prefix = hardware.ACCELERATOR_RESOURCE_PREFIX
    by_resource = [k[len(prefix):] for k in resources if k.startswith(prefix)]
    by_label = labels.get(hardware.LABEL_ACCELERATOR_TYPE)
    if by_label and by_resource and by_resource != [by_label]:
        raise _Problem(f"{where}.labels.{hardware.LABEL_ACCELERATOR_TYPE}",
                       f"{by_label!r} disagrees with the resource {prefix}{by_resource[0]}")
    ray_type = by_label or (by_resource[0] if by_resource else None)
    device = next((key for key in (hardware.GPU, hardware.TPU) if resources.get(key, 0) > 0), None)
    if device is None:
        if ray_type:
            raise _Problem(f"{where}.resources", f"names accelerator type {ray_type!r} but has no GPU or TPU count")
        return None
    if ray_type is None:
        raise _Problem(f"{where}.resources", f"{device}: {resources[device]:g} needs its type: add the label "
                       f"{hardware.LABEL_ACCELERATOR_TYPE} (e.g. A100) or the resource {prefix}A100, "
                       "as Ray reports it on real nodes")
    acc = hardware.BY_RAY_TYPE.get(ray_type)
    if acc is None and device == hardware.TPU:
        known = ", ".join(a.ray_type for a in hardware.CATALOG if a.is_tpu)
        raise _Problem(f"{where}.resources", f"TPU type {ray_type!r} is not in orch's catalog ({known})")
    if acc is None:  # a GPU type outside the catalog: a custom type of unknown figures (_snapshot)
        if not hardware.CUSTOM_NAME.match(ray_type):
            raise _Problem(f"{where}.resources", f"accelerator type {ray_type!r} is not a type name "
                           "(letters, digits, '.', '_' and '-')")
        return f"{ray_type}:{int(resources[device])}"
    if acc.is_tpu != (device == hardware.TPU):
        raise _Problem(f"{where}.resources", f"{ray_type} is a {acc.family.upper()}, but the node declares {device}")
    return f"{acc.name}:{int(resources[device])}"


def _snapshot(name: str, entries: list[NodeEntry], problems: list[str], path: Path) -> ClusterSnapshot:
    if problems:
        raise SpecError(problems, source=str(path))
    safe = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")[:63] or "cluster"
    # GPU types outside the catalog, as a live node's would be: known by name, figures unknown.
    custom = {request.type.name for request, _ in map(NodeEntry.devices, entries) if request and request.type.custom}
    try:
        types = [AcceleratorEntry(name=name, family="gpu") for name in sorted(custom)]
        return snapshot_from_cluster(ClusterFile(name=safe, nodes=entries, accelerators=types))
    except ValidationError as error:  # e.g. two node types whose names normalise alike
        raise SpecError(field_problems(error), source=str(path)) from None


def config_kind(path: str | Path) -> str:
    """``raycluster`` (a KubeRay manifest), ``launcher`` (a Ray cluster launcher YAML) or ``cluster`` (orch's)."""
    docs = _documents(Path(path))
    if any(isinstance(d, dict) and d.get("kind") == "RayCluster" for d in docs):
        return "raycluster"
    if len(docs) == 1 and isinstance(docs[0], dict) and "available_node_types" in docs[0]:
        return "launcher"
    return "cluster"


def snapshot_from_config(path: str | Path) -> ClusterSnapshot:
    """Any cluster description orch reads: a RayCluster, a launcher YAML or an orch cluster file."""
    kind = config_kind(path)
    if kind == "raycluster":
        return snapshot_from_raycluster(path)
    if kind == "launcher":
        return snapshot_from_launcher(path)
    return snapshot_from_cluster(load_cluster_file(path))


def autoscaling_snapshot(path: str | Path) -> ClusterSnapshot | None:
    """The max-scale snapshot of a cluster an autoscaler grows (launcher YAML, RayCluster), else None.

    An orch cluster file lists nodes that all exist (``orch up`` starts every one), so
    there is nothing to scale and the answer is None.
    """
    kind = config_kind(path)
    if kind == "cluster":
        return None
    return snapshot_from_raycluster(path) if kind == "raycluster" else snapshot_from_launcher(path)
