"""Placement on the simulated mixed cluster (cluster/mixed-sim.yaml), proven through Ray.

The cluster is real Ray nodes on this machine with declared GPUs and TPUs;
each worker writes the node id and labels Ray gave it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import PLACEMENT, REPO, own_cluster, run_orch, wait_until_ended, where_job

pytestmark = pytest.mark.ray
STANDING = REPO / "tests" / "data" / "standing"  # stands.py: a driver that stays in its folder until told


@pytest.fixture(scope="module")
def sim_home(orch_home):
    """The mixed cluster under its own ORCH_HOME, beside the session's local one."""
    with own_cluster(str(REPO / "cluster" / "mixed-sim.yaml"), "orch-sim-") as home:
        yield home


def _placements(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*rank-*.json"))]


def _nodes_by_id(sim_home) -> dict[str, dict]:
    from orchestrator.adapters import cluster

    snap = cluster.live_snapshot(cluster.require(None))
    return {n.node_id: {"name": n.name, "labels": dict(n.labels)} for n in snap.nodes}


def test_fallback_skips_missing_h100_and_runs_on_a100(sim_home, tmp_path):
    job = where_job(tmp_path, "where", {"workers": 2, "accelerator": ["H100:1", "A100:1"]})
    done = run_orch("submit", str(job), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["accelerator"] == "A100:1"
    nodes = _nodes_by_id(sim_home)
    placed = _placements(tmp_path)
    assert len(placed) == 2
    for worker in placed:
        assert worker["labels"]["ray.io/accelerator-type"] == "A100"
        assert nodes[worker["node_id"]]["name"].startswith("a100-")
        assert len(worker["accelerator_ids"]["GPU"]) == 1


def test_tpu_slice_job_gets_both_hosts_of_the_slice(sim_home, tmp_path):
    job = where_job(tmp_path, "where", {"workers": 1, "accelerator": "TPU-v4-16"})
    done = run_orch("submit", str(job), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    placed = _placements(tmp_path)
    nodes = _nodes_by_id(sim_home)
    assert sorted(nodes[w["node_id"]]["name"] for w in placed) == ["v4-0", "v4-1"]
    assert len({w["labels"]["ray.io/tpu-slice-name"] for w in placed}) == 1


def test_infeasible_job_is_rejected_with_the_missing_hardware(sim_home, tmp_path):
    job = where_job(tmp_path, "where", {"workers": 1, "accelerator": "H100:1"})
    started = time.perf_counter()
    done = run_orch("submit", str(job))
    assert time.perf_counter() - started < 2.0  # at once, not Ray's forever-PENDING
    assert done.returncode == 2
    assert "H100" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.soak  # ~90 s; `make soak`
def test_sweep_with_fallback_runs_trials_on_both_kinds_at_once(sim_home, tmp_path):
    # [A100:4, T4:1] on two 4xA100 nodes and one T4 node: three trial slots, two
    # A100 and one T4; a fourth trial waits for a slot instead of overcommitting.
    out = tmp_path / "out"
    out.mkdir()
    spec = {"name": "mixed-sweep", "entrypoint": "where.py:train_loop", "working_dir": str(PLACEMENT),
            "config": {"out": str(out), "hold_s": 6, "x": 0.5},
            "resources": {"accelerator": ["A100:4", "T4:1"], "memory": "1GiB"},
            "sweep": {"metric": "rank", "mode": "max", "samples": 4, "scheduler": "fifo",
                      "space": {"x": {"uniform": [0, 1]}}}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    done = run_orch("submit", str(path), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(run_orch("results", json.loads(done.stdout)["job"], "--json").stdout)
    kinds = sorted(t["accelerator"] for t in results["trials"])
    assert len(kinds) == 4 and set(kinds) == {"A100:4", "T4:1"}

    placed = _placements(tmp_path)
    nodes = _nodes_by_id(sim_home)
    assert {nodes[w["node_id"]]["name"] for w in placed} >= {"a100-0", "a100-1", "t4-0"}
    overlapping = max(sum(1 for w in placed if w["started"] <= at < w["ended"]) for at in (w["started"] for w in placed))
    assert overlapping == 3  # every slot busy at once, never more than the slots


def test_drivers_on_two_nodes_sharing_a_package_keep_their_folders(sim_home, tmp_path):
    """Each simulated node unpacks job packages into a folder of its own, as separate machines
    do (issue 24): a second node setting up the same package, uploaded again meanwhile, leaves
    the folder the first node's driver stands in where it was."""
    from orchestrator.adapters import cluster, packages
    from orchestrator.adapters.jobs import JobsClient
    from orchestrator.core.protocol import NODE_LABEL

    jobs = JobsClient(cluster.require(None))
    code = tmp_path / "code"
    shutil.copytree(STANDING, code)
    (code / "stamp.txt").write_text(uuid.uuid4().hex)  # a package no other test has unpacked
    sent: dict[str, bytes] = {}
    uri = packages.package_working_dir(str(code), lambda _: False, sent.__setitem__)
    kept = tmp_path / packages.name_of(uri)
    kept.write_bytes(sent[kept.name])
    go = tmp_path / "go"
    drivers = {}
    for node in ("a100-0", "a100-1"):
        jobs.ensure_package(kept.name, kept, anew=True)  # the package uploaded (again)
        report = tmp_path / f"{node}.txt"
        drivers[jobs._sdk().submit_job(entrypoint=f"python stands.py {go} {report}", runtime_env={"working_dir": uri},
                                       entrypoint_label_selector={NODE_LABEL: node})] = report
        _until(report.exists, lambda: {driver: jobs.get(driver) for driver in drivers})
    go.write_text("go")
    for driver, report in drivers.items():
        _until(lambda: jobs.get(driver)["status"] not in ("PENDING", "RUNNING"), lambda: jobs.get(driver))
        assert jobs.get(driver)["status"] == "SUCCEEDED", (jobs.get(driver), report.read_text())
        assert report.read_text().endswith("read the job's own file\n")


@pytest.mark.soak  # ~90 s; `make soak`
def test_job_survives_the_loss_of_a_worker_node(sim_home, tmp_path):
    # Last in this module: it kills one of the cluster's nodes.
    import signal

    from orchestrator.adapters import cluster
    from orchestrator.adapters.http import http
    from orchestrator.adapters.jobs import JobsClient
    from orchestrator.load.cluster import read_cluster

    done = run_orch("submit", "jobs/digits/torch-mlp.yaml", "--json", "--set", "name=node-loss",
                    "--set", "config.epochs=10", "--set", "failure.max_failures=2",
                    "--set", "resources.placement=spread")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)["job"]
    info = cluster.require(None)
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, run_orch("status", job).stdout
        time.sleep(1)
        history = json.loads(run_orch("results", job, "--json").stdout)["history"]
        if not history or history[-1]["epoch"] < 1:
            continue
        ray_job = JobsClient(info).get(job)
        query = ("/api/v0/actors?detail=1&limit=1000&filter_keys=class_name&filter_predicates=%3D"
                 "&filter_values=RayTrainWorker")
        actors = [a for a in http(info.dashboard_url, query)["data"]["result"]["result"]
                  if a["state"] == "ALIVE" and a["job_id"] == ray_job["job_id"]]
        if actors:
            break
    names = {n.node_id: n.name for n in cluster.live_snapshot(info).nodes}
    order = [n.name for n in cluster._nodes_to_start(str(REPO / "cluster" / "mixed-sim.yaml"), read_cluster)[0]]
    victim = next(names[a["node_id"]] for a in actors if names[a["node_id"]] != "head-0")
    os.killpg(info.process_groups[order.index(victim)], signal.SIGKILL)

    view = wait_until_ended(job)
    assert view["state"] == JobState.SUCCEEDED, view["reason"]
    assert view["restarts"] >= 1
    assert victim not in {n.name for n in cluster.live_snapshot(info).nodes}


def _until(done, shown, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, shown()
        time.sleep(0.5)
