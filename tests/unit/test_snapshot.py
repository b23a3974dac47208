"""Cluster files and snapshots: the nodes orch starts and plans against, as Ray would see them."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.errors import SpecError
from orchestrator.core.snapshot import ClusterSnapshot, Node, QueueConfig
from orchestrator.load.cluster import ClusterFile, load_cluster_file, snapshot_from_cluster
from tests.conftest import REPO
from benchmarks.synthetic import synthetic_cluster

GIB = 1024**3


def cluster(*entries: dict, queues: dict | None = None) -> ClusterSnapshot:
    data = {"name": "c", "nodes": list(entries), "queues": queues or {}}
    return snapshot_from_cluster(ClusterFile.model_validate(data))


@pytest.fixture(scope="module")
def mixed() -> ClusterSnapshot:
    return snapshot_from_cluster(load_cluster_file(REPO / "cluster" / "mixed-sim.yaml"))


# ---- the example cluster of SPEC.md section 2 ------------------------------------

MIXED_NODES = [
    ("head-0", {"CPU": 2, "memory": 8 * GIB}, {}),
    ("a100-0", {"CPU": 8, "memory": 64 * GIB, "GPU": 4, "accelerator_type:A100": 1},
     {"ray.io/accelerator-type": "A100"}),
    ("a100-1", {"CPU": 8, "memory": 64 * GIB, "GPU": 4, "accelerator_type:A100": 1},
     {"ray.io/accelerator-type": "A100"}),
    ("t4-0", {"CPU": 4, "memory": 16 * GIB, "GPU": 1, "accelerator_type:T4": 1}, {"ray.io/accelerator-type": "T4"}),
    ("v4-0", {"CPU": 8, "memory": 32 * GIB, "TPU": 4, "accelerator_type:TPU-V4": 1, "TPU-v4-16-head": 1},
     {"ray.io/accelerator-type": "TPU-V4", "ray.io/tpu-slice-name": "v4-slice-0", "ray.io/tpu-worker-id": "0",
      "ray.io/tpu-topology": "2x2x2", "ray.io/tpu-pod-type": "v4-16"}),
    ("v4-1", {"CPU": 8, "memory": 32 * GIB, "TPU": 4, "accelerator_type:TPU-V4": 1},
     {"ray.io/accelerator-type": "TPU-V4", "ray.io/tpu-slice-name": "v4-slice-0", "ray.io/tpu-worker-id": "1",
      "ray.io/tpu-topology": "2x2x2", "ray.io/tpu-pod-type": "v4-16"}),
]


@pytest.mark.parametrize("name,resources,labels", MIXED_NODES, ids=[n[0] for n in MIXED_NODES])
def test_mixed_sim_nodes_carry_ray_resources_and_labels(mixed, name, resources, labels):
    node = mixed.node(name)
    assert dict(node.total) == resources
    assert dict(node.free) == resources
    assert dict(node.labels) == labels


def test_mixed_sim_has_exactly_the_spec_nodes_and_queues(mixed):
    assert [n.name for n in mixed.nodes] == [n[0] for n in MIXED_NODES]
    assert mixed.queues == {
        "default": QueueConfig("default"),
        "research": QueueConfig("research", {"GPU": 4.0}, "lab", {"GPU": 4.0}),
        "prod": QueueConfig("prod", {"GPU": 4.0, "CPU": 32.0}, "lab", None),
    }
    assert mixed.queues["research"].limit("GPU") == 8
    assert mixed.queues["prod"].limit("GPU") == 4
    assert mixed.queues["default"].limit("GPU") is None


def test_local_cluster_file_is_one_node():
    snap = snapshot_from_cluster(load_cluster_file(REPO / "cluster" / "local.yaml"))
    assert [(n.name, dict(n.total)) for n in snap.nodes] == [("local-0", {"CPU": 2, "memory": 8 * GIB})]
    assert list(snap.queues) == ["default"]
    assert snap.index.by_type == {}


def test_default_queue_exists_without_queues_section():
    snap = cluster({"name": "cpu", "cpus": 4, "memory": "8GiB"})
    assert snap.queues == {"default": QueueConfig("default")}


def test_single_host_tpu_is_its_own_slice():
    snap = cluster({"name": "tpu", "count": 2, "cpus": 8, "memory": "32GiB", "accelerator": "TPU-v4:4"})
    node = snap.node("tpu-1")
    assert node.total["TPU-v4-8-head"] == 1 and node.total["TPU"] == 4
    assert node.labels["ray.io/tpu-slice-name"] == "tpu-slice-1"
    assert node.labels["ray.io/tpu-pod-type"] == "v4-8"
    assert node.labels["ray.io/tpu-topology"] == "2x2x1"
    assert [s.name for s in snap.index.slices["v4-8"]] == ["tpu-slice-0", "tpu-slice-1"]


def test_slices_group_hosts_in_order():
    snap = cluster({"name": "v4", "count": 4, "cpus": 8, "memory": "32GiB", "tpu_slice": "v4-16"})
    slices = snap.index.slices["v4-16"]
    assert [(s.name, [snap.nodes[p].name for p in s.members]) for s in slices] == [
        ("v4-slice-0", ["v4-0", "v4-1"]), ("v4-slice-1", ["v4-2", "v4-3"])]
    assert snap.node("v4-2").total["TPU-v4-16-head"] == 1
    assert "TPU-v4-16-head" not in snap.node("v4-3").total


def test_extra_labels_are_kept():
    snap = cluster({"name": "cpu", "cpus": 4, "memory": "8GiB", "labels": {"zone": "a"}})
    assert snap.node("cpu-0").labels == {"zone": "a"}


# ---- cluster file validation -----------------------------------------------------

BAD_ENTRIES = [
    ({"accelerator": "GPU:4"}, "a node declares TYPE:COUNT"),
    ({"accelerator": "RTX-4090:1"}, "unknown accelerator type 'RTX-4090'"),
    ({"accelerator": "TPU-v4-16"}, "slices go in tpu_slice"),
    ({"accelerator": "TPU-v4:4", "tpu_slice": "v4-16", "count": 3}, "not a multiple of 2"),
    ({"accelerator": "TPU-v4:2", "tpu_slice": "v4-16", "count": 2}, "its hosts have TPU-v4:4"),
    ({"accelerator": "A100:4", "tpu_slice": "v4-16", "count": 2}, "its hosts have TPU-v4:4"),
    ({"tpu_slice": "v9-16"}, "unknown TPU generation"),
    ({"memory": "lots"}, "is not a size"),
    ({"cpus": -1}, "greater than or equal to 0"),
    ({"count": 0}, "greater than or equal to 1"),
    ({"cpu": 4}, "did you mean 'cpus'"),
    ({"labels": {"ray.io/accelerator-type": "A100"}}, "set by orch"),
]


def load(tmp_path, data: dict):
    path = tmp_path / "cluster.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return load_cluster_file(path)


@pytest.mark.parametrize("change,message", BAD_ENTRIES, ids=[m for _, m in BAD_ENTRIES])
def test_bad_node_entries_are_rejected(tmp_path, change, message):
    entry = {"name": "n", "cpus": 4, "memory": "8GiB", **change}
    with pytest.raises(SpecError) as error:
        load(tmp_path, {"name": "c", "nodes": [entry]})
    assert message in str(error.value)
    assert "cluster.yaml:1:" in str(error.value) and ": nodes[0]" in str(error.value)  # line:col, field


BAD_FILES = [
    ({"queues": {"q": {"quota": {"gpu": 4}}}}, "queues.q: quota: unknown resource 'gpu'; use CPU, GPU, TPU, memory"),
    ({"queues": {"q": {"quota": {"GPU": 4}, "borrow": {"GPU": 4}}}}, "borrow needs a cohort"),
    ({"queues": {"q": {"quota": {"GPU": -1}}}}, "number >= 0"),
    ({"queues": {"Bad Name": {}}}, "should match pattern"),
    ({"nodes": [{"name": "n", "cpus": 1, "memory": "1GiB"}, {"name": "n", "cpus": 1, "memory": "1GiB"}]},
     "listed twice"),
    ({"nodes": []}, "at least 1 item"),
    ({"nodez": []}, "nodez: unknown field; did you mean 'nodes'?"),
]


@pytest.mark.parametrize("change,message", BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_cluster_files_are_rejected(tmp_path, change, message):
    with pytest.raises(SpecError) as error:
        load(tmp_path, {"name": "c", "nodes": [{"name": "n", "cpus": 1, "memory": "1GiB"}], **change})
    assert message in str(error.value)


def test_quota_memory_takes_sizes():
    snap = cluster({"name": "n", "cpus": 1, "memory": "1GiB"}, queues={"q": {"quota": {"memory": "64GiB"}}})
    assert snap.queues["q"].quota == {"memory": 64.0 * GIB}


@pytest.mark.parametrize("text,message", [("name: [", "not valid YAML"), (None, "cannot read")])
def test_unreadable_files_raise_spec_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_cluster_file(path)


# ---- allocate / release ----------------------------------------------------------


def test_allocate_and_release_are_inverse(mixed):
    demand = {"a100-0": {"GPU": 3, "CPU": 2.5, "memory": 4 * GIB}, "t4-0": {"GPU": 1}}
    taken = mixed.allocate(demand)
    assert taken.node("a100-0").free == {"CPU": 5.5, "memory": 60 * GIB, "GPU": 1, "accelerator_type:A100": 1}
    assert taken.node("t4-0").free["GPU"] == 0
    assert mixed.node("a100-0").free["GPU"] == 4  # the original is untouched
    back = taken.release(demand)
    assert [dict(n.free) for n in back.nodes] == [dict(n.free) for n in mixed.nodes]


def test_derived_snapshots_share_the_index(mixed):
    taken = mixed.allocate({"a100-0": {"GPU": 1}})
    assert taken.index is mixed.index
    assert taken.with_free({"t4-0": {"CPU": 1, "GPU": 0}}).index is mixed.index


@pytest.mark.parametrize("demand,message", [
    ({"a100-0": {"GPU": 5}}, "cannot take 5 GPU on a100-0"),
    ({"nope-0": {"GPU": 1}}, "no node 'nope-0'"),
])
def test_allocate_rejects_more_than_free(mixed, demand, message):
    with pytest.raises(ValueError, match=message):
        mixed.allocate(demand)


def test_release_rejects_more_than_total(mixed):
    with pytest.raises(ValueError, match="cannot give back"):
        mixed.release({"t4-0": {"GPU": 1}})


def test_free_orderings_are_patched_not_rebuilt():
    snap = synthetic_cluster(300, busy=0.3, seed=1)
    for cid in range(len(snap.index.classes)):
        snap.free_order(cid), snap.free_sum(cid)
    current = snap
    for step, node in enumerate(snap.nodes[::7]):
        take = {k: min(v, 1.0) for k, v in node.free.items() if k in ("CPU", "GPU", "TPU") and v >= 1}
        if take:
            current = current.allocate({node.name: take}) if step % 3 else current.release(
                {node.name: {k: 1.0 for k in take if node.total[k] - node.free[k] >= 1}})
    fresh = ClusterSnapshot(current.name, current.nodes, current.queues)
    for cid in range(len(snap.index.classes)):
        assert current.free_order(cid) == fresh.free_order(cid)
        assert current.free_sum(cid) == pytest.approx(fresh.free_sum(cid))


def test_node_accelerator_type_from_resource_when_unlabelled():
    node = Node("n", {"GPU": 1, "accelerator_type:L4": 1}, {"GPU": 1})
    assert node.ray_accelerator_type == "L4" and node.device_key == "GPU"
    assert Node("c", {"CPU": 1}, {"CPU": 1}).ray_accelerator_type is None


def test_duplicate_node_names_are_rejected():
    node = Node("n", {"CPU": 1}, {"CPU": 1})
    with pytest.raises(ValueError, match="unique"):
        ClusterSnapshot("c", (node, node)).index


def test_cluster_files_are_read_by_the_hardened_reader(tmp_path):
    """Line and column for YAML errors, and a duplicate key is an error, not a silent win."""
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nnodes:\n  - {name: n, cpus: 1, memory: 1GiB}\nname: d\n")
    with pytest.raises(SpecError, match=r"c.yaml:4:1: name: duplicate key 'name' \(first at line 1\)"):
        load_cluster_file(path)
    path.write_text("name: c\nnodes: [\n")
    with pytest.raises(SpecError, match=r"c.yaml:3:1: not valid YAML"):
        load_cluster_file(path)
    path.write_text("name: !!python/object:os.system c\n")
    with pytest.raises(SpecError, match="YAML tags such as '!!python/object:os.system' are not allowed"):
        load_cluster_file(path)
