"""Real cluster configs (cluster/gcp.yaml, aws.yaml, kuberay.yaml): valid for Ray and KubeRay, and plannable.

Launcher YAMLs are checked against the schema Ray itself ships (ray/autoscaler/ray-schema.json),
the RayCluster manifest against orch's own schema of the KubeRay fields it relies on
(tests/data/schemas/raycluster.schema.json). No cluster is started and Ray is not imported.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.core.allocator import Infeasible, Plan, plan
from orchestrator.core.errors import SpecError
from orchestrator.core.spec import JobSpec
from orchestrator.load import launcher as clusterconfig
from tests.conftest import REPO

jsonschema = pytest.importorskip("jsonschema")  # a dependency of Ray, so always here

CLUSTER = REPO / "cluster"
RAYCLUSTER_SCHEMA = REPO / "tests" / "data" / "schemas" / "raycluster.schema.json"
GIB = 1024**3


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def launcher_files() -> list[Path]:
    return sorted(p for p in CLUSTER.glob("*.yaml") if "available_node_types" in (load(p) or {}))


def job(**resources) -> JobSpec:
    return JobSpec.model_validate({"name": "j", "entrypoint": "train.py:f", "resources": resources})


def write(tmp_path: Path, data: dict, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problems(call, path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        call(path)
    assert caught.value.source == str(path) and caught.value.exit_code == 2
    return caught.value.problems


# ---- the files are valid for the tools that consume them ---------------------------------


def test_every_launcher_yaml_in_cluster_is_found():
    assert [p.name for p in launcher_files()] == ["aws.yaml", "gcp.yaml"]


@pytest.mark.parametrize("path", launcher_files(), ids=lambda p: p.name)
def test_launcher_yaml_matches_rays_shipped_schema(path):
    schema = json.loads(clusterconfig.ray_schema_path().read_text())
    assert schema["title"] == "Ray AutoScaler"  # Ray's own file, read from the installed package
    jsonschema.Draft7Validator(schema).validate(load(path))
    config = clusterconfig.validate_launcher(path)  # plus Ray's cross-field rules
    # Every node type can be at its maximum at once: the size orch plans against is reachable.
    types = config["available_node_types"]
    assert config["max_workers"] == sum(t.get("max_workers", 0) for k, t in types.items() if k != "head")


def test_kuberay_manifest_matches_the_raycluster_schema():
    schema = json.loads(RAYCLUSTER_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "ray.io/v1" in schema["description"] and "KubeRay v1.5.1" in schema["description"]
    jsonschema.Draft202012Validator(schema).validate(load(CLUSTER / "kuberay.yaml"))


def _worker(doc: dict, group: str) -> dict:
    return next(g for g in doc["spec"]["workerGroupSpecs"] if g["groupName"] == group)


SCHEMA_REFUSES = {
    "v1alpha1": lambda d: d.update(apiVersion="ray.io/v1alpha1"),
    "labels in rayStartParams": lambda d: _worker(d, "cpu")["rayStartParams"].update(labels="a=b"),
    "resources in both places": lambda d: _worker(d, "a100")["rayStartParams"].update({"num-gpus": "4"}),
    "no maxReplicas": lambda d: _worker(d, "cpu").pop("maxReplicas"),
    "no groupName": lambda d: _worker(d, "cpu").pop("groupName"),
    "misspelled field": lambda d: _worker(d, "cpu").update(maxReplica=3),
    "unquoted start param": lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
    "numeric group resource": lambda d: _worker(d, "a100")["resources"].update({"GPU": 4}),
    "bad label key": lambda d: _worker(d, "a100")["labels"].update({"not a key": "x"}),
    "no containers": lambda d: _worker(d, "cpu")["template"]["spec"].update(containers=[]),
    "auth mode": lambda d: d["spec"]["authOptions"].update(mode="password"),
}


@pytest.mark.parametrize("change", SCHEMA_REFUSES.values(), ids=SCHEMA_REFUSES.keys())
def test_raycluster_schema_refuses_what_kuberay_refuses(change):
    doc = load(CLUSTER / "kuberay.yaml")
    change(doc)
    validator = jsonschema.Draft202012Validator(json.loads(RAYCLUSTER_SCHEMA.read_text()))
    assert list(validator.iter_errors(doc))


# ---- snapshots at max scale -----------------------------------------------------------


def _shape(path: Path) -> list[tuple[str, dict]]:
    snap = clusterconfig.snapshot_from_config(path)
    keep = ("CPU", "GPU", "TPU")
    return [(n.name, {k: v for k, v in n.total.items() if k in keep}) for n in snap.nodes]


def test_gcp_snapshot_is_every_type_at_max_workers_plus_the_head():
    assert _shape(CLUSTER / "gcp.yaml") == [
        ("head-0", {"CPU": 0}),
        *[(f"cpu-{i}", {"CPU": 16}) for i in range(4)],
        *[(f"a100-{i}", {"CPU": 48, "GPU": 4}) for i in range(2)],
        *[(f"tpu-v5e-{i}", {"CPU": 112, "TPU": 4}) for i in range(4)],  # one v5litepod-16 slice: 4 hosts
    ]


def test_aws_snapshot_is_every_type_at_max_workers_plus_the_head():
    assert _shape(CLUSTER / "aws.yaml") == [
        ("head-0", {"CPU": 0}),
        *[(f"cpu-{i}", {"CPU": 16}) for i in range(4)],
        *[(f"a10g-{i}", {"CPU": 48, "GPU": 4}) for i in range(2)],
        ("a100-0", {"CPU": 96, "GPU": 8}),
    ]


def test_kuberay_snapshot_is_every_group_at_max_replicas_times_hosts():
    snap = clusterconfig.snapshot_from_raycluster(CLUSTER / "kuberay.yaml")
    assert _shape(CLUSTER / "kuberay.yaml") == [
        ("head-0", {"CPU": 0}),  # the group's resources field wins over the container's 8 CPUs
        *[(f"cpu-{i}", {"CPU": 16}) for i in range(4)],
        *[(f"a100-{i}", {"CPU": 40, "GPU": 4}) for i in range(2)],  # GPUs from nvidia.com/gpu limits
        *[(f"tpu-v4-{i}", {"CPU": 200, "TPU": 4}) for i in range(2)],  # 1 replica x numOfHosts 2
    ]
    assert snap.node("cpu-0").total["memory"] == 48 * GIB
    tpu = snap.node("tpu-v4-0")
    assert tpu.total["TPU-v4-16-head"] == 1 and "TPU-v4-16-head" not in snap.node("tpu-v4-1").total
    assert dict(tpu.labels) == {"ray.io/accelerator-type": "TPU-V4", "ray.io/tpu-slice-name": "tpu-v4-slice-0",
                                "ray.io/tpu-worker-id": "0", "ray.io/tpu-topology": "2x2x2",
                                "ray.io/tpu-pod-type": "v4-16"}


def test_orch_cluster_files_still_load_through_the_same_entry_point():
    assert [name for name, _ in _shape(CLUSTER / "mixed-sim.yaml")][:2] == ["head-0", "a100-0"]


# ---- the allocator plans GPU and TPU-slice jobs against them ---------------------------------

PLANS = [
    ("gcp.yaml", {"accelerator": "A100:4", "workers": 2}, "A100:4", ["a100-0", "a100-1"]),
    ("gcp.yaml", {"accelerator": "TPU-v5e-16"}, "TPU-v5e-16", [f"tpu-v5e-{i}" for i in range(4)]),
    ("gcp.yaml", {"cpus": 8, "workers": 2}, "CPU", ["cpu-0", "cpu-0"]),  # CPU work on CPU nodes first
    ("aws.yaml", {"accelerator": "GPU:4", "workers": 2}, "A10G:4", ["a10g-0", "a10g-1"]),
    ("aws.yaml", {"accelerator": "A100:8"}, "A100:8", ["a100-0"]),
    ("kuberay.yaml", {"accelerator": "TPU-v4-16"}, "TPU-v4-16", ["tpu-v4-0", "tpu-v4-1"]),
    ("kuberay.yaml", {"accelerator": ["H100:1", "A100:2"], "workers": 4}, "A100:2",
     ["a100-0", "a100-0", "a100-1", "a100-1"]),
]


@pytest.mark.parametrize("file,resources,accelerator,nodes", PLANS,
                         ids=[f"{p[0]}:{p[2]}" for p in PLANS])
def test_allocator_plans_against_the_cluster_at_max_scale(file, resources, accelerator, nodes):
    result = plan(job(**resources), clusterconfig.snapshot_from_config(CLUSTER / file))
    assert isinstance(result, Plan), result
    assert (result.status, result.accelerator, list(result.nodes)) == ("placeable", accelerator, nodes)


@pytest.mark.parametrize("file,accelerator,reason", [
    ("aws.yaml", "TPU-v4-16", "no TPU-v4-16 slice"),
    ("gcp.yaml", "TPU-v4-16", "no TPU-v4-16 slice"),  # its slices are v5e
    ("kuberay.yaml", "A100:8", "A100"),  # 4 per node at most
])
def test_jobs_the_cluster_can_never_hold_are_infeasible(file, accelerator, reason):
    result = plan(job(accelerator=accelerator), clusterconfig.snapshot_from_config(CLUSTER / file))
    assert isinstance(result, Infeasible) and reason in " | ".join(result.reasons)


# ---- clear errors ---------------------------------------------------------------------


def gcp() -> dict:
    return copy.deepcopy(load(CLUSTER / "gcp.yaml"))


def test_launcher_schema_errors_name_the_field(tmp_path):
    data = gcp()
    data["available_node_types"]["cpu"]["resources"]["memory"] = "42GiB"
    data["available_node_types"]["cpu"]["max_worker"] = 3
    found = problems(clusterconfig.validate_launcher, write(tmp_path, data))
    assert found == ["available_node_types.cpu: Additional properties are not allowed ('max_worker' was unexpected)",
                     "available_node_types.cpu.resources.memory: '42GiB' is not of type 'integer'"]


def test_launcher_cross_field_rules_are_rays(tmp_path):
    data = gcp()
    data["head_node_type"] = "ray_head"
    data["available_node_types"]["cpu"]["min_workers"] = 9
    found = problems(clusterconfig.validate_launcher, write(tmp_path, data))
    assert found[0].startswith("head_node_type: 'ray_head' must name one of available_node_types")
    assert found[1] == "max_workers: 7 is less than the node types' min_workers together (10)"


LAUNCHER_ERRORS = {
    "gpu without type": (lambda t: (t["a100"]["resources"].pop("accelerator_type:A100"), t["a100"].pop("labels")),
                         "available_node_types.a100.resources: GPU: 4 needs its type"),
    "unknown TPU type": (lambda t: (t["tpu-v5e"]["labels"].update({"ray.io/accelerator-type": "TPU-V9"}),
                                    t["tpu-v5e"]["resources"].pop("accelerator_type:TPU-V5LITEPOD", None)),
                         "TPU type 'TPU-V9' is not in orch's catalog"),
    "label and resource disagree": (lambda t: t["a100"]["labels"].update({"ray.io/accelerator-type": "L4"}),
                                    "'L4' disagrees with the resource accelerator_type:A100"),
    "wrong topology": (lambda t: t["tpu-v5e"]["labels"].update({"ray.io/tpu-topology": "2x8"}),
                       "available_node_types.tpu-v5e.labels.ray.io/tpu-topology: '2x8', but the node's "
                       "hardware makes it '4x4'"),
    "slice head declared": (lambda t: t["tpu-v5e"]["resources"].update({"TPU-v5litepod-16-head": 1}),
                            "Ray puts it on worker 0 of each slice itself"),
    "per-host label declared": (lambda t: t["tpu-v5e"]["labels"].update({"ray.io/tpu-worker-id": "0"}),
                                "ray.io/tpu-worker-id: Ray sets it on each host"),
    "chips per host": (lambda t: t["tpu-v5e"]["resources"].update(TPU=8),
                       "its hosts have TPU-v5e:4, but accelerator is 'TPU-v5e:8'"),
    "no memory": (lambda t: t["cpu"]["resources"].pop("memory"),
                  "available_node_types.cpu.resources: declare memory"),
    "type without devices": (lambda t: t["cpu"].update(labels={"ray.io/accelerator-type": "A100"}),
                             "names accelerator type 'A100' but has no GPU or TPU count"),
    "slice without chips": (lambda t: t["tpu-v5e"].update(resources={"CPU": 112, "memory": GIB}, labels={}),
                            "its nodes are v5litepod-16 TPU hosts: declare TPU"),
    "bad slice": (lambda t: t["tpu-v5e"]["node_config"].update(acceleratorType="v5litepod-12"),
                  "available_node_types.tpu-v5e.node_config: 'v5litepod-12' is not a TPU-v5e slice"),
}


@pytest.mark.parametrize("change,expected", LAUNCHER_ERRORS.values(), ids=LAUNCHER_ERRORS.keys())
def test_launcher_node_type_errors_say_what_to_declare(tmp_path, change, expected):
    data = gcp()
    change(data["available_node_types"])
    found = problems(clusterconfig.snapshot_from_launcher, write(tmp_path, data))
    assert len(found) == 1 and expected in found[0], found


def test_every_node_type_problem_is_reported_at_once(tmp_path):
    data = gcp()
    data["available_node_types"]["cpu"]["resources"].pop("memory")
    data["available_node_types"]["a100"]["labels"]["ray.io/accelerator-type"] = "L4"
    assert [p.split(":")[0] for p in problems(clusterconfig.snapshot_from_launcher, write(tmp_path, data))] == [
        "available_node_types.cpu.resources", "available_node_types.a100.labels.ray.io/accelerator-type"]


def test_gcp_accelerator_config_names_the_slice(tmp_path):
    data = gcp()
    data["available_node_types"]["tpu-v5e"]["node_config"] = {"acceleratorConfig": {"type": "V5LITE_POD",
                                                                                     "topology": "4x4"}}
    snap = clusterconfig.snapshot_from_launcher(write(tmp_path, data))
    assert sum(n.name.startswith("tpu-v5e-") for n in snap.nodes) == 4


RAYCLUSTER_ERRORS = {
    "labels in rayStartParams": (lambda d: _worker(d, "cpu")["rayStartParams"].update(labels="a=b"),
                                 "spec.workerGroupSpecs[0].rayStartParams.labels: not supported"),
    "hosts of a slice": (lambda d: _worker(d, "tpu-v4").update(numOfHosts=1),
                         "spec.workerGroupSpecs[2].numOfHosts: 1, but one v4-16 slice has 2 hosts"),
    "no maxReplicas": (lambda d: _worker(d, "cpu").pop("maxReplicas"),
                       "spec.workerGroupSpecs[0].maxReplicas: set it"),
    "bad quantity": (lambda d: _worker(d, "cpu")["template"]["spec"]["containers"][0]["resources"]["limits"]
                     .update(memory="lots"), "limits.memory: 'lots' is not a quantity"),
    "unknown gke tpu": (lambda d: _worker(d, "tpu-v4")["labels"].pop("ray.io/tpu-pod-type") and
                        _worker(d, "tpu-v4")["template"]["spec"]["nodeSelector"].update(
                            {clusterconfig.GKE_TPU_ACCELERATOR: "tpu-v9"}),
                        "gke-tpu-accelerator: 'tpu-v9' is not one of"),
}


@pytest.mark.parametrize("change,expected", RAYCLUSTER_ERRORS.values(), ids=RAYCLUSTER_ERRORS.keys())
def test_raycluster_errors_name_the_field(tmp_path, change, expected):
    doc = load(CLUSTER / "kuberay.yaml")
    change(doc)
    found = problems(clusterconfig.snapshot_from_raycluster, write(tmp_path, doc))
    assert len(found) == 1 and expected in found[0], found


def test_raycluster_reads_start_params_and_gke_selectors(tmp_path):
    doc = load(CLUSTER / "kuberay.yaml")
    tpu = _worker(doc, "tpu-v4")
    tpu.pop("labels")  # the slice comes from the GKE node selectors, as Ray's autoscaler reads it
    tpu.pop("resources")
    tpu["rayStartParams"] = {"num-cpus": "100", "resources": '"{\\"accelerator_type:TPU-V4\\": 1}"'}
    snap = clusterconfig.snapshot_from_raycluster(write(tmp_path, doc))
    assert snap.node("tpu-v4-1").total["CPU"] == 100
    assert snap.node("tpu-v4-1").labels["ray.io/tpu-pod-type"] == "v4-16"


def test_a_file_that_is_not_a_raycluster_says_so(tmp_path):
    path = write(tmp_path, {"apiVersion": "v1", "kind": "ConfigMap"})
    assert problems(clusterconfig.snapshot_from_raycluster, path) == ["expected one RayCluster document, found 0"]


@pytest.mark.parametrize("text,amount", [("500m", 1), ("4", 4), (4, 4), ("1.5", 2), ("64Gi", 64 * GIB),
                                         ("40G", 40 * 10**9), ("512Mi", 512 * 2**20)])
def test_kubernetes_quantities_round_up_like_rays_autoscaler(text, amount):
    assert clusterconfig._quantity(text, "x") == amount


def test_reading_configs_never_imports_ray():
    code = ("import sys; from orchestrator.load import launcher as c; "
            "[c.snapshot_from_config(f'cluster/{n}.yaml') for n in ('gcp', 'aws', 'kuberay')]; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
