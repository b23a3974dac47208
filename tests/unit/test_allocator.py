"""The allocator on hand-built snapshots: every accelerator form, fallback, gangs, quotas, auto."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.allocator import Infeasible, Plan, plan, to_json
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec
from orchestrator.load.cluster import ClusterFile, load_cluster_file, snapshot_from_cluster
from tests.conftest import REPO
from benchmarks.synthetic import synthetic_cluster, synthetic_jobs

GIB = 1024**3


def job(resources: dict | None = None, **fields) -> JobSpec:
    return JobSpec.model_validate({"name": "j", "entrypoint": "train.py:f", "resources": resources or {}, **fields})


def cluster(*entries: dict, queues: dict | None = None) -> ClusterSnapshot:
    data = {"name": "c", "nodes": list(entries), "queues": queues or {}}
    return snapshot_from_cluster(ClusterFile.model_validate(data))


@pytest.fixture(scope="module")
def mixed() -> ClusterSnapshot:
    return snapshot_from_cluster(load_cluster_file(REPO / "cluster" / "mixed-sim.yaml"))


def placed(result) -> tuple:
    assert isinstance(result, Plan), result
    return result.status, result.accelerator, list(result.nodes)


def infeasible(result) -> str:
    assert isinstance(result, Infeasible), result
    return " | ".join(result.reasons)


# ---- every accelerator form on the free mixed-sim cluster ----------------------------

PLACEABLE = [
    ({}, "CPU", ["head-0"]),
    ({"cpus": 3}, "CPU", ["t4-0"]),  # too big for the head: the cheapest accelerator node
    ({"accelerator": "GPU:1"}, "T4:1", ["t4-0"]),  # smallest GPU type first
    ({"accelerator": "GPU:1", "workers": 2}, "A100:1", ["a100-0", "a100-0"]),  # one type for all workers
    ({"accelerator": "GPU:1", "accelerator_memory": "20GiB"}, "A100:1", ["a100-0"]),
    ({"accelerator": "a100:2"}, "A100:2", ["a100-0"]),
    ({"accelerator": "nvidia-a100:4", "workers": 2}, "A100:4", ["a100-0", "a100-1"]),
    ({"accelerator": "A100:2", "accelerator_memory": "80GiB"}, "A100:2", ["a100-0"]),
    ({"accelerator": "T4"}, "T4:1", ["t4-0"]),
    ({"accelerator": ["H100:1", "A100:1"], "workers": 2}, "A100:1", ["a100-0", "a100-0"]),
    ({"accelerator": ["TPU-v4-8", "A100:4"]}, "A100:4", ["a100-0"]),
    ({"accelerator": {"any_of": ["A100:1", "T4:1"]}}, "T4:1", ["t4-0"]),
    ({"accelerator": {"any_of": ["TPU-v4-16", "A100:4"]}}, "A100:4", ["a100-0"]),
    ({"accelerator": "TPU-v4-16"}, "TPU-v4-16", ["v4-0", "v4-1"]),
    ({"accelerator": "tpu-v4-16", "workers": 2}, "TPU-v4-16", ["v4-0", "v4-1"]),
    ({"accelerator": "TPU-v4:4"}, "TPU-v4:4", ["v4-0"]),
    ({"accelerator": "TPU-v4:2", "workers": 2}, "TPU-v4:2", ["v4-0", "v4-0"]),
    ({"accelerator": "A100:1", "workers": 2, "placement": "spread"}, "A100:1", ["a100-0", "a100-1"]),
    ({"accelerator": "A100:1", "workers": 3, "placement": "spread"}, "A100:1", ["a100-0", "a100-1", "a100-1"]),
    ({"accelerator": "A100:1", "workers": 2, "placement": "strict_spread"}, "A100:1", ["a100-0", "a100-1"]),
    ({"accelerator": "A100:1", "workers": 4, "placement": "strict_pack"}, "A100:1", ["a100-0"] * 4),
    ({"accelerator": "A100:2", "workers": 3}, "A100:2", ["a100-0", "a100-1", "a100-1"]),
    ({"workers": 3, "cpus": 2, "placement": "strict_spread"}, "CPU", ["head-0", "a100-1", "t4-0"]),
]


@pytest.mark.parametrize("resources,accelerator,nodes", PLACEABLE, ids=[json.dumps(r) for r, _, _ in PLACEABLE])
def test_placeable(mixed, resources, accelerator, nodes):
    assert placed(plan(job(resources), mixed)) == ("placeable", accelerator, nodes)


INFEASIBLE = [
    ({"accelerator": "H100:1"}, "H100:1: no node has H100"),
    ({"accelerator": "A100:8"}, "needs 8 x A100 per worker, largest A100 node has 4"),
    ({"accelerator": "A100:4", "memory": "96GiB"}, "needs 96 GiB memory per worker, largest A100 node has 64 GiB"),
    ({"accelerator": "A100:1", "cpus": 16}, "needs 16 CPU per worker, largest A100 node has 8"),
    ({"accelerator": "A100:4", "workers": 3}, "needs 3 workers at once, the cluster's A100 nodes hold at most 2"),
    ({"accelerator": "A100:1", "workers": 3, "placement": "strict_spread"},
     "needs 3 nodes for strict_spread, cluster has 2 A100 nodes with room"),
    ({"accelerator": "A100:1", "workers": 5, "placement": "strict_pack"},
     "strict_pack puts all 5 workers on one node; one A100 node holds at most 4"),
    ({"accelerator": "A100:1", "accelerator_memory": "48GiB"},
     "needs 48 GiB accelerator memory per worker; 1 x A100 has 40 GiB"),
    ({"accelerator": "GPU:1", "accelerator_memory": "48GiB"},
     "GPU:1: needs 48 GiB accelerator memory per worker; 1 x T4 has 16 GiB; 1 x A100 has 40 GiB"),
    ({"accelerator": "GPU:8"},
     "GPU:8: needs 8 x T4 per worker, largest T4 node has 1; needs 8 x A100 per worker, largest A100 node has 4"),
    ({"accelerator": "GPU:1", "workers": 9}, "needs 9 workers at once, the cluster's A100 nodes hold at most 8"),
    ({"accelerator": "TPU-v4-8"}, "no TPU-v4-8 slice on this cluster (slices: TPU-v4-16)"),
    ({"accelerator": "TPU-v4-16", "workers": 3},
     "TPU-v4-16 runs one worker on each of its 2 hosts; workers: 3 conflicts (leave workers out or set it to 2)"),
    ({"accelerator": "TPU-v4-16", "memory": "48GiB"}, "needs 48 GiB memory per worker, largest TPU-v4 node has 32 GiB"),
    ({"accelerator": "TPU-v4-16", "accelerator_memory": "512GiB"},
     "needs 512 GiB accelerator memory, a TPU-v4-16 slice has 256 GiB"),
    ({"accelerator": "TPU-v5e:4"}, "no node has TPU-v5e"),
    ({"accelerator": ["H100:1", "V100:1"]}, "H100:1: no node has H100 | V100:1: no node has V100"),
    ({"cpus": 9}, "needs 9 CPU per worker, largest node has 8"),
]


@pytest.mark.parametrize("resources,reason", INFEASIBLE, ids=[r for _, r in INFEASIBLE])
def test_infeasible_says_why(mixed, resources, reason):
    assert reason in infeasible(plan(job(resources), mixed))


# ---- free vs total: gangs, fallback, best fit, whole slices ---------------------------


def busy(snapshot: ClusterSnapshot, **taken: dict) -> ClusterSnapshot:
    return snapshot.allocate({name.replace("_", "-"): resources for name, resources in taken.items()})


def test_gang_that_fits_only_the_total_is_queued(mixed):
    snap = busy(mixed, a100_0={"GPU": 4})
    result = plan(job({"accelerator": "A100:4", "workers": 2}), snap)
    assert placed(result) == ("queued", "A100:4", ["a100-0", "a100-1"])
    assert result.reasons == ("A100:4 x 2 fits the cluster but not its free resources now",)
    assert "not the free resources now" in result.why


def test_gang_is_never_placed_in_part(mixed):
    snap = busy(mixed, a100_0={"GPU": 3})
    assert plan(job({"accelerator": "A100:1", "workers": 6}), snap).status == "queued"
    assert plan(job({"accelerator": "A100:1", "workers": 5}), snap).status == "placeable"


def test_fallback_skips_an_option_that_only_fits_later(mixed):
    snap = busy(mixed, a100_0={"GPU": 4}, a100_1={"GPU": 4})
    result = plan(job({"accelerator": ["A100:4", "T4:1"]}), snap)
    assert placed(result) == ("placeable", "T4:1", ["t4-0"])
    assert result.rejected == (("A100:4", "fits the cluster but not the free resources now"),)


def test_first_queued_option_when_nothing_is_free(mixed):
    snap = busy(mixed, a100_0={"GPU": 4}, a100_1={"GPU": 4}, t4_0={"GPU": 1})
    result = plan(job({"accelerator": ["H100:1", "A100:4", "T4:1"]}), snap)
    assert placed(result) == ("queued", "A100:4", ["a100-0"])
    assert result.rejected[0] == ("H100:1", "no node has H100")


def test_any_of_picks_cheapest_and_explains(mixed):
    result = plan(job({"accelerator": {"any_of": ["A100:1", "T4:1"]}}), mixed)
    assert result.why == "any_of: T4:1 is the cheapest placeable option at $0.35/h"
    assert result.rejected == (("A100:1", "placeable at $2.93/h; T4:1 costs $0.35/h"),)


def test_any_of_prefers_placeable_over_cheaper_queued(mixed):
    snap = busy(mixed, t4_0={"GPU": 1})
    assert placed(plan(job({"accelerator": {"any_of": ["A100:1", "T4:1"]}}), snap))[1] == "A100:1"


def test_best_fit_takes_the_tightest_node(mixed):
    snap = busy(mixed, a100_1={"GPU": 2})
    assert placed(plan(job({"accelerator": "A100:2"}), snap))[2] == ["a100-1"]
    assert placed(plan(job({"accelerator": "A100:3"}), snap))[2] == ["a100-0"]


def test_never_half_a_slice(mixed):
    snap = busy(mixed, v4_1={"TPU": 1})
    assert placed(plan(job({"accelerator": "TPU-v4-16"}), snap)) == ("queued", "TPU-v4-16", ["v4-0", "v4-1"])
    assert placed(plan(job({"accelerator": "TPU-v4:4"}), snap)) == ("placeable", "TPU-v4:4", ["v4-0"])


def test_slice_plan_carries_tpu_facts(mixed):
    result = plan(job({"accelerator": "TPU-v4-16"}), mixed)
    assert result.per_worker == {"CPU": 1.0, "memory": 2 * GIB, "TPU": 4}
    assert result.label_selector == {"ray.io/tpu-slice-name": "v4-slice-0"}
    assert (result.tpu.accelerator_type, result.tpu.topology, result.tpu.head_resource) == (
        "TPU-V4", "2x2x2", "TPU-v4-16-head")
    assert result.placement == "strict_spread" and result.workers == 2


def test_single_host_tpus_prefer_standalone_hosts():
    snap = cluster({"name": "v4", "count": 2, "cpus": 8, "memory": "32GiB", "tpu_slice": "v4-16"},
                   {"name": "host", "cpus": 8, "memory": "32GiB", "accelerator": "TPU-v4:4"})
    result = plan(job({"accelerator": "TPU-v4:4"}), snap)
    assert placed(result) == ("placeable", "TPU-v4:4", ["host-0"])
    assert (result.tpu.topology, result.tpu.pod_type) == ("2x2x1", "v4-8")
    assert placed(plan(job({"accelerator": "TPU-v4-8"}), snap))[2] == ["host-0"]


ELASTIC = [
    ({}, 8),
    ({"a100-0": {"GPU": 1}}, 7),
    ({"a100-0": {"GPU": 4}}, 4),
    ({"a100-0": {"GPU": 2}, "a100-1": {"CPU": 7}}, 3),
]


@pytest.mark.parametrize("taken,workers", ELASTIC, ids=[json.dumps(t) for t, _ in ELASTIC])
def test_elastic_places_what_fits_up_to_max(mixed, taken, workers):
    result = plan(job({"accelerator": "A100:1", "workers": "2..16"}), mixed.allocate(taken))
    assert (result.status, result.workers, result.min_workers, result.max_workers) == ("placeable", workers, 2, 16)


def test_elastic_queued_when_min_does_not_fit_now(mixed):
    snap = busy(mixed, a100_0={"GPU": 4}, a100_1={"GPU": 3})
    result = plan(job({"accelerator": "A100:1", "workers": "2..16"}), snap)
    assert (result.status, result.workers) == ("queued", 8)


# ---- quota, queues --------------------------------------------------------------------

QUOTA = [
    ({"accelerator": "GPU:4", "workers": 3}, "research", "needs 12 GPU; queue research may hold at most 8 GPU"),
    ({"accelerator": "GPU:4", "workers": 2}, "prod", "needs 8 GPU; queue prod may hold at most 4 GPU"),
    ({"cpus": 8, "workers": 5}, "prod", "needs 40 CPU; queue prod may hold at most 32 CPU"),
]


@pytest.mark.parametrize("resources,queue,reason", QUOTA, ids=[r for _, _, r in QUOTA])
def test_quota_plus_borrow_limits_a_job(mixed, resources, queue, reason):
    assert reason in infeasible(plan(job(resources, schedule={"queue": queue}), mixed))


def test_quota_within_borrow_is_fine_and_caps_elastic(mixed):
    research = job({"accelerator": "GPU:4", "workers": 2}, schedule={"queue": "research"})
    assert plan(research, mixed).status == "placeable"
    result = plan(job({"accelerator": "A100:1", "workers": "1..16"}, schedule={"queue": "prod"}), mixed)
    assert (result.workers, result.max_workers) == (4, 4)


def test_quota_falls_back_to_next_option(mixed):
    result = plan(job({"accelerator": ["A100:4", "CPU"], "workers": 2}, schedule={"queue": "prod"}), mixed)
    assert result.accelerator == "CPU"
    assert result.rejected == (("A100:4", "needs 8 GPU; queue prod may hold at most 4 GPU"),)


def test_empty_cluster_has_no_node():
    assert infeasible(plan(job(), ClusterSnapshot("empty", ()))) == "CPU: no node has CPU"


def test_unknown_queue_suggests_close_name(mixed):
    assert infeasible(plan(job(schedule={"queue": "reserch"}), mixed)) == (
        "no queue 'reserch' on cluster 'mixed-sim'; did you mean 'research'?")


# ---- auto ---------------------------------------------------------------------------

AUTO = [
    ({"params": "5M"}, "CPU", "auto: 5M parameters is below 10M: CPU"),
    ({"params": "100M"}, "T4:1", "T4:1 ($0.0054)"),
    ({}, "T4:1", "no memory hint"),
    ({"params": "7B"}, "A100:4", "7B parameters need 104 GiB accelerator memory to train"),
    ({"params": "12B"}, "TPU-v4-16", "TPU-v4-16 is the first placeable of them; sharded over the 8 chips of a "
                                     "TPU-v4-16 slice (SPMD): one TPU-v4 holds 32 GiB"),
]


@pytest.mark.parametrize("hints,accelerator,why", AUTO, ids=[json.dumps(h) for h, _, _ in AUTO])
def test_auto_picks_by_price_per_tflops(mixed, hints, accelerator, why):
    result = plan(job({"accelerator": "auto"}, hints=hints), mixed)
    assert result.accelerator == accelerator
    assert why in result.why


# One 8-device node of a type: the fewest of 1, 2, 4 or 8 devices whose memory holds the
# model's training memory (16 bytes a parameter: 7B is 104 GiB), never 3 or 6.
AUTO_COUNTS = [
    ("A100", {"params": "1B"}, {}, "A100:1"),  # 14.9 GiB in 40 GiB
    ("A100", {"params": "3B"}, {}, "A100:2"),  # 44.7 GiB: 2 devices
    ("A100", {"params": "7B"}, {}, "A100:4"),  # 104 GiB: 3 devices would do, 4 it is
    ("A100", {"params": "15B"}, {}, "A100:8"),  # 224 GiB: 6 devices would do
    ("A100", {"params": "20B"}, {}, "A100:8"),  # 298 GiB in 320 GiB
    ("A100", {}, {"accelerator_memory": "100GiB"}, "A100:4"),
    ("A100-80GB", {"params": "7B"}, {}, "A100-80GB:2"),
    ("H200", {"params": "7B"}, {}, "H200:1"),
    ("T4", {"params": "7B"}, {}, "T4:8"),
    ("TPU-v5e", {"params": "7B"}, {}, "TPU-v5e:8"),  # 7 chips of 16 GiB: a v5e host has 8
]


@pytest.mark.parametrize("acc,hints,resources,accelerator", AUTO_COUNTS, ids=[f"{a}-{h or r}" for a, h, r, _ in AUTO_COUNTS])
def test_auto_takes_a_power_of_two_devices_per_worker(acc, hints, resources, accelerator):
    snap = cluster({"name": "n", "cpus": 16, "memory": "64GiB", "accelerator": f"{acc}:8"})
    assert plan(job({"accelerator": "auto", **resources}, hints=hints), snap).accelerator == accelerator


AUTO_SHARDING = [
    ("A100-80GB", "7B", "A100-80GB:2 is the first placeable of them; sharded over 2 x A100-80GB per worker "
                        "(FSDP/ZeRO): one A100-80GB holds 80 GiB"),
    ("A100", "7B", "A100:4 is the first placeable of them; sharded over 4 x A100 per worker (FSDP/ZeRO): "
                   "one A100 holds 40 GiB"),
]


@pytest.mark.parametrize("acc,params,why", AUTO_SHARDING, ids=[a for a, _, _ in AUTO_SHARDING])
def test_auto_says_when_the_model_is_sharded(acc, params, why):
    snap = cluster({"name": "n", "cpus": 16, "memory": "64GiB", "accelerator": f"{acc}:8"})
    result = plan(job({"accelerator": "auto"}, hints={"params": params}), snap)
    assert result.why == (f"auto: {params} parameters need 104 GiB accelerator memory to train; by list price per "
                          f"peak TFLOP/s-hour: {result.accelerator} (${result.request.type.price_per_tflops:.4f}); "
                          + why)


def test_auto_on_one_device_says_nothing_of_sharding():
    snap = cluster({"name": "n", "cpus": 16, "memory": "64GiB", "accelerator": "H200:8"})
    assert "sharded" not in plan(job({"accelerator": "auto"}, hints={"params": "7B"}), snap).why


AUTO_REJECTED = [
    # More than 8 devices of a type: not an option, however large its nodes.
    ("A100:8", "22B", "A100", "needs 9 x A100 for 328 GiB; auto shards a worker over at most 8"),
    ("T4:8", "9B", "T4", "needs 9 x T4 for 134 GiB; auto shards a worker over at most 8"),
    # A power of two larger than the node: not 6 devices of a 6-device node.
    ("A100:6", "15B", "A100", "needs 8 x A100 for 224 GiB; the largest A100 node has 6"),
    ("A100:3", "7B", "A100", "needs 4 x A100 for 104 GiB; the largest A100 node has 3"),
]


@pytest.mark.parametrize("node,params,acc,reason", AUTO_REJECTED, ids=[f"{n}-{p}" for n, p, _, _ in AUTO_REJECTED])
def test_auto_rejects_a_type_that_needs_too_many_devices(node, params, acc, reason):
    snap = cluster({"name": "big", "cpus": 16, "memory": "64GiB", "accelerator": node},
                   {"name": "h200", "cpus": 16, "memory": "64GiB", "accelerator": "H200:8"})
    result = plan(job({"accelerator": "auto"}, hints={"params": params}), snap)
    assert result.accelerator.startswith("H200:")
    assert (acc, reason) in result.rejected


def test_auto_uses_accelerator_memory_over_params(mixed):
    result = plan(job({"accelerator": "auto", "accelerator_memory": "20GiB"}, hints={"params": "100M"}), mixed)
    assert result.accelerator == "A100:1"
    assert ("T4", "needs 2 x T4 for 20 GiB; the largest T4 node has 1") in result.rejected


def test_auto_without_accelerators_is_cpu():
    snap = snapshot_from_cluster(load_cluster_file(REPO / "cluster" / "local.yaml"))
    result = plan(job({"accelerator": "auto"}, hints={"params": "7B"}), snap)
    assert (result.accelerator, result.why) == ("CPU", "auto: the cluster has no accelerators: CPU")


def test_auto_too_large_for_anything_is_infeasible(mixed):
    reasons = infeasible(plan(job({"accelerator": "auto"}, hints={"params": "40B"}), mixed))
    assert ("TPU-v4: needs 19 x TPU-v4 for 596 GiB; auto shards a worker over at most 8, the largest slice "
            "TPU-v4-16 holds 256 GiB") in reasons


def test_auto_falls_to_the_next_type_when_the_cheapest_is_busy(mixed):
    snap = busy(mixed, t4_0={"GPU": 1})
    assert plan(job({"accelerator": "auto"}, hints={"params": "100M"}), snap).accelerator == "A100:1"


# ---- output ------------------------------------------------------------------------

SPEC_KEYS = {"job", "status", "accelerator", "workers", "per_worker", "nodes", "cost_per_hour", "rejected", "reasons"}


def test_to_json_matches_spec_shape(mixed):
    data = to_json(plan(job({"accelerator": ["H100:1", "A100:1"], "workers": 2}), mixed))
    assert SPEC_KEYS <= set(data)
    assert {k: data[k] for k in SPEC_KEYS} == {
        "job": "j", "status": "placeable", "accelerator": "A100:1", "workers": 2,
        "per_worker": {"CPU": 1, "GPU": 1, "memory": 2147483648}, "nodes": ["a100-0", "a100-0"],
        "cost_per_hour": 5.86, "rejected": [{"option": "H100:1", "reason": "no node has H100"}], "reasons": []}
    assert isinstance(data["per_worker"]["CPU"], int)
    assert json.loads(json.dumps(data)) == data


def test_to_json_of_infeasible(mixed):
    data = to_json(plan(job({"accelerator": "H100:1"}), mixed))
    assert data == {"job": "j", "status": "infeasible", "accelerator": None, "workers": 0, "per_worker": {},
                    "nodes": [], "cost_per_hour": None,
                    "rejected": [{"option": "H100:1", "reason": "no node has H100"}],
                    "reasons": ["H100:1: no node has H100"]}


@pytest.mark.parametrize("resources,cost", [
    ({}, 0.0401), ({"accelerator": "A100:1", "workers": 2}, 5.86), ({"accelerator": "TPU-v4-16"}, 25.76)])
def test_cost_per_hour(mixed, resources, cost):
    assert plan(job(resources), mixed).cost_per_hour == cost


def test_plan_demand_allocates_and_releases(mixed):
    result = plan(job({"accelerator": "A100:2", "workers": 3, "cpus": 2}), mixed)
    taken = mixed.allocate(result.demand())
    assert taken.node("a100-1").free["GPU"] == 0 and taken.node("a100-0").free["GPU"] == 2
    assert taken.node("a100-1").free["CPU"] == 4
    assert taken.release(result.demand()).node("a100-1").free == mixed.node("a100-1").free


# ---- a thousand nodes ----------------------------------------------------------------


def test_synthetic_plans_are_consistent():
    """Placeable plans really fit what is free (allocated one after another); queued ones fit the totals."""
    snap = synthetic_cluster(1000, busy=0.6, seed=3)
    empty = synthetic_cluster(1000, busy=0.0)
    statuses = set()
    for spec in synthetic_jobs(3000, seed=4):
        result = plan(spec, snap)
        statuses.add(result.status)
        if isinstance(result, Infeasible):
            continue
        assert len(result.nodes) == result.workers >= result.min_workers
        types = {snap.node(n).ray_accelerator_type for n in result.nodes}
        assert len(types) == 1 or result.request.kind == "cpu"
        if result.request.kind == "slice":
            slice_names = {snap.node(n).labels["ray.io/tpu-slice-name"] for n in result.nodes}
            assert len(slice_names) == 1 and len(result.nodes) == result.request.slice.hosts
        if result.status == "placeable":
            snap = snap.allocate(result.demand())  # raises if the plan took more than was free
        else:
            empty.allocate(result.demand())
    assert statuses == {"placeable", "queued", "infeasible"}


def test_thousand_nodes_every_placeable_plan_fits_what_is_free():
    # Speed is benchmarks/allocator_scale.py's job; here, correctness at scale.
    snap = synthetic_cluster(1000, busy=0.5)
    free = {n.name: n.free for n in snap.nodes}
    for spec in synthetic_jobs(2000, seed=5):
        decision = plan(spec, snap)
        if getattr(decision, "status", None) != "placeable":
            continue
        for node, taken in decision.demand().items():
            assert all(free[node].get(k, 0.0) + 1e-9 >= v for k, v in taken.items()), (spec.name, node)
