"""Placement on the simulated mixed cluster (cluster/mixed-sim.yaml), proven through Ray.

The cluster is real Ray nodes on this machine with declared GPUs and TPUs;
each worker writes the node id and labels Ray gave it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, run_orch

pytestmark = pytest.mark.ray
WHERE = REPO / "tests" / "data" / "placement"


@pytest.fixture(scope="module")
def sim_home(orch_home):
    """The mixed cluster under its own ORCH_HOME, beside the session's local one."""
    from orchestrator import cluster

    home = tempfile.mkdtemp(prefix="orch-sim-")
    previous = os.environ["ORCH_HOME"]
    os.environ["ORCH_HOME"] = home
    try:
        cluster.up(str(REPO / "cluster" / "mixed-sim.yaml"), progress=lambda _: None)
        yield home
    finally:
        cluster.down(progress=lambda _: None)
        os.environ["ORCH_HOME"] = previous


def _job(tmp_path: Path, accelerator: str, workers: int = 1) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    spec = {"name": "where", "entrypoint": "where.py:train_loop",
            "working_dir": str(WHERE), "config": {"out": str(out)},
            "resources": {"workers": workers, "accelerator": json.loads(accelerator), "memory": "1GiB"}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    return path


def _placements(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("rank-*.json"))]


def _nodes_by_id(sim_home) -> dict[str, dict]:
    from orchestrator import cluster

    snap = cluster.live_snapshot(cluster.require(None))
    return {n.node_id: {"name": n.name, "labels": dict(n.labels)} for n in snap.nodes}


def test_fallback_skips_missing_h100_and_runs_on_a100(sim_home, tmp_path):
    job = _job(tmp_path, '["H100:1", "A100:1"]', workers=2)
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
    job = _job(tmp_path, '"TPU-v4-16"')
    done = run_orch("submit", str(job), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    placed = _placements(tmp_path)
    nodes = _nodes_by_id(sim_home)
    assert sorted(nodes[w["node_id"]]["name"] for w in placed) == ["v4-0", "v4-1"]
    assert len({w["labels"]["ray.io/tpu-slice-name"] for w in placed}) == 1


def test_infeasible_job_is_rejected_with_the_missing_hardware(sim_home, tmp_path):
    job = _job(tmp_path, '"H100:1"')
    done = run_orch("submit", str(job))
    assert done.returncode == 2
    assert "H100" in done.stderr and "Traceback" not in done.stderr
