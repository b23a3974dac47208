"""Sweep trial slots: the queue gives a sweep as many trials at once as fit when it admits it,
within its queue's own quota, and counts them all as held (so nothing else is admitted onto them)."""

from __future__ import annotations

import pytest

from orchestrator.core.allocator import plan as allocate
from orchestrator.core.launch import launch_request, plan_record, record_demand
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.quota import plan_totals
from orchestrator.core.policy.slots import MAX_TRIAL_SLOTS
from orchestrator.core.policy.state import QueuedJob, QueueState
from orchestrator.core.protocol import PAYLOAD_ENV
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec
from orchestrator.load.cluster import ClusterFile, snapshot_from_cluster

SPACE = {"lr": {"uniform": [0.001, 0.1]}}


def sweep(samples: int, max_concurrent: int | str = "auto", queue: str = "default", space=SPACE,
          **resources) -> JobSpec:
    resources.setdefault("memory", "1GiB")
    return JobSpec.model_validate({
        "name": "s", "entrypoint": "train.py:f", "config": {"lr": 0.01}, "resources": resources,
        "schedule": {"queue": queue},
        "sweep": {"metric": "loss", "mode": "min", "samples": samples, "max_concurrent": max_concurrent,
                  "space": space},
    })


def job(name: str, queue: str = "default", **resources) -> JobSpec:
    resources.setdefault("memory", "1GiB")
    return JobSpec.model_validate({"name": name, "entrypoint": "train.py:f", "resources": resources,
                                   "schedule": {"queue": queue}})


def cluster(*nodes: dict, queues: dict | None = None) -> ClusterSnapshot:
    return snapshot_from_cluster(ClusterFile.model_validate({"name": "c", "nodes": list(nodes),
                                                             "queues": queues or {}}))


def admit(snapshot: ClusterSnapshot, *specs: JobSpec) -> dict:
    state = QueueState.build(snapshot, [QueuedJob(s.name, s, i) for i, s in enumerate(specs)], [])
    return dict(decide(state).admit)


def slots(placed) -> int:
    return 1 + len(placed.trials)


LOCAL = {"name": "local", "cpus": 2, "memory": "8GiB"}


@pytest.mark.parametrize(("spec", "nodes", "expected"), [
    (sweep(8, cpus=1), [LOCAL], 2),  # one-CPU trials on two CPUs
    # 3 workers x 1 CPU per trial on 8 CPUs: two whole trials; the 2 CPUs left over do not make a third.
    (sweep(8, workers=3, cpus=1), [{"name": "cpu", "count": 2, "cpus": 4, "memory": "16GiB"}], 2),
    (sweep(8, cpus=1, memory="3GiB"), [{"name": "local", "cpus": 8, "memory": "8GiB"}], 2),  # memory too
    (sweep(3, cpus=1), [{"name": "big", "cpus": 64, "memory": "256GiB"}], 3),  # capped at samples
    (sweep(8, max_concurrent=2, cpus=1), [{"name": "big", "cpus": 64, "memory": "256GiB"}], 2),
    (sweep(16, accelerator="A100:2", cpus=1),
     [LOCAL, {"name": "a100", "count": 2, "cpus": 8, "memory": "64GiB", "accelerator": "A100:4"}], 4),
])
def test_a_sweep_gets_the_trials_that_fit_at_once(spec, nodes, expected):
    assert slots(admit(cluster(*nodes), spec)["s"]) == expected


def test_only_what_is_free_now():
    busy = cluster({"name": "local", "cpus": 4, "memory": "16GiB"}).allocate({"local-0": {"CPU": 3}})
    assert slots(admit(busy, sweep(8, cpus=1))["s"]) == 1


def test_the_slots_stay_within_the_queues_own_quota():
    queues = {"q": {"quota": {"CPU": 3}, "cohort": "all", "borrow": {"CPU": 8}}, "other": {"quota": {"CPU": 8},
                                                                                        "cohort": "all"}}
    snapshot = cluster({"name": "big", "cpus": 16, "memory": "64GiB"}, queues=queues)
    placed = admit(snapshot, sweep(8, queue="q", cpus=1))["s"]
    assert slots(placed) == 3 and plan_totals(placed)["CPU"] == 3


def test_jobs_behind_a_sweep_get_only_what_its_trials_leave():
    snapshot = cluster({"name": "local", "cpus": 4, "memory": "16GiB"})
    decision = admit(snapshot, sweep(3, cpus=1), job("after", cpus=2))
    assert slots(decision["s"]) == 3 and "after" not in decision


def test_a_stored_sweep_plan_holds_every_slot():
    snapshot = cluster({"name": "local", "cpus": 4, "memory": "16GiB"})
    placed = admit(snapshot, sweep(8, cpus=1))["s"]
    record = plan_record(placed, snapshot)
    assert len(record["trials"]) == 3 and all("scaling" in trial for trial in record["trials"])
    assert record_demand(record) == placed.demand() == {"local-0": {"CPU": 4.0, "memory": 4.0 * 2**30}}


def test_with_a_fallback_list_slots_fill_the_first_choice_first():
    nodes = cluster({"name": "a100", "cpus": 8, "memory": "64GiB", "accelerator": "A100:4"},
                    {"name": "t4", "cpus": 8, "memory": "64GiB", "accelerator": "T4:1"})
    placed = admit(nodes, sweep(8, accelerator=["A100:4", "T4:1"], cpus=1))["s"]
    assert [p.accelerator for p in (placed, *placed.trials)] == ["A100:4", "T4:1"]


def test_cpu_slots_keep_off_the_cpus_of_devices_a_queued_job_wants():
    # [A100:1, CPU]: the first slot takes the A100; CPU slots must not take the T4 node's CPUs
    # while a T4 job waits (it would wait for the whole sweep).
    nodes = cluster({"name": "a100", "cpus": 2, "memory": "64GiB", "accelerator": "A100:1"},
                    {"name": "t4", "cpus": 8, "memory": "64GiB", "accelerator": "T4:1"},
                    {"name": "cpu", "cpus": 2, "memory": "16GiB"})
    decision = admit(nodes, sweep(8, accelerator=["A100:1", "CPU"], cpus=2), job("t4-job", cpus=8, accelerator="T4:1"))
    slots_on = {node for p in (decision["s"], *decision["s"].trials) for node in p.nodes}
    assert "t4-0" not in slots_on and "t4-job" in decision


def test_a_quota_on_another_resource_does_not_stop_the_slots():
    node = {"name": "big", "cpus": 16, "memory": "64GiB", "accelerator": "A100:4"}
    snapshot = cluster(node, queues={"q": {"quota": {"CPU": 8, "GPU": 1}}})
    state = QueueState.build(snapshot, [], [])
    held = job("gpu-held", queue="q", cpus=1, accelerator="A100:2")  # over its GPU quota (it borrowed, say)
    state.enqueue(QueuedJob("gpu-held", held, 0))
    state.start("gpu-held", allocate(held, cluster(node, queues={"q": {}})))
    state.enqueue(QueuedJob("s", sweep(8, queue="q", cpus=1), 1))
    assert slots(dict(decide(state).admit)["s"]) == 7  # 8 CPUs of quota, one holds gpu-held


def test_grid_values_multiply_the_trials():
    grid = sweep(1, space={"lr": {"grid": [0.1, 0.01, 0.001]}}, cpus=1)
    assert grid.sweep.trials == 3
    assert slots(admit(cluster({"name": "big", "cpus": 64, "memory": "256GiB"}), grid)["s"]) == 3


def test_slots_are_capped_so_the_payload_stays_small():
    # 16-worker trials on nodes with long names: a slot's size in the payload must not grow with them.
    spec = sweep(1000, workers=16, cpus=1, memory="1GiB")
    big = cluster({"name": "a-rather-long-node-pool-name", "count": 40, "cpus": 128, "memory": "2048GiB"})
    placed = admit(big, spec)["s"]
    assert slots(placed) == MAX_TRIAL_SLOTS
    request = launch_request("s-1", spec.model_dump(mode="json"), {"env_vars": {}}, plan_record(placed, big), 1, "/s")
    assert len(request["runtime_env"]["env_vars"][PAYLOAD_ENV]) < 100 * 1024  # Linux: 128 KiB per variable
    assert request["metadata"]["orch_trial_slots"] == str(MAX_TRIAL_SLOTS)
