"""``concurrent_trials``: how many sweep trials' worker groups fit the free resources at once."""

from __future__ import annotations

from orchestrator.allocator import concurrent_trials
from orchestrator.snapshot import ClusterFile, ClusterSnapshot, snapshot_from_cluster
from orchestrator.spec import JobSpec

SPACE = {"lr": {"uniform": [0.001, 0.1]}}


def sweep(samples: int, **resources) -> JobSpec:
    return JobSpec.model_validate({
        "name": "s", "entrypoint": "train.py:f", "config": {"lr": 0.01}, "resources": resources,
        "sweep": {"metric": "loss", "mode": "min", "samples": samples, "space": SPACE},
    })


def cluster(*nodes: dict) -> ClusterSnapshot:
    return snapshot_from_cluster(ClusterFile.model_validate({"name": "c", "nodes": list(nodes)}))


def test_one_cpu_trials_on_two_cpus_run_two_at_once():
    assert concurrent_trials(sweep(8, cpus=1, memory="1GiB"), cluster({"name": "local", "cpus": 2, "memory": "8GiB"})) == 2


def test_gangs_count_whole_worker_groups_only():
    # 3 workers x 1 CPU per trial on 8 CPUs: two whole trials fit, the 2 CPUs left over do not make a third.
    spec = sweep(8, workers=3, cpus=1, memory="1GiB")
    assert concurrent_trials(spec, cluster({"name": "cpu", "count": 2, "cpus": 4, "memory": "16GiB"})) == 2


def test_memory_limits_as_well_as_cpus():
    spec = sweep(8, cpus=1, memory="3GiB")
    assert concurrent_trials(spec, cluster({"name": "local", "cpus": 8, "memory": "8GiB"})) == 2


def test_capped_at_samples():
    assert concurrent_trials(sweep(3, cpus=1, memory="1GiB"), cluster({"name": "big", "cpus": 64, "memory": "256GiB"})) == 3


def test_accelerator_trials_count_devices():
    spec = sweep(16, accelerator="A100:2", cpus=1, memory="1GiB")
    nodes = cluster({"name": "head", "cpus": 2, "memory": "8GiB"},
                    {"name": "a100", "count": 2, "cpus": 8, "memory": "64GiB", "accelerator": "A100:4"})
    assert concurrent_trials(spec, nodes) == 4


def test_counts_only_what_is_free_now():
    snapshot = cluster({"name": "local", "cpus": 4, "memory": "16GiB"})
    busy = snapshot.allocate({"local-0": {"CPU": 3}})
    assert concurrent_trials(sweep(8, cpus=1, memory="1GiB"), busy) == 1


def test_at_least_one_when_nothing_is_free():
    snapshot = cluster({"name": "local", "cpus": 2, "memory": "8GiB"})
    busy = snapshot.allocate({"local-0": {"CPU": 2}})
    assert concurrent_trials(sweep(8, cpus=1, memory="1GiB"), busy) == 1
