"""A custom accelerator type declared in a simulated cluster file is shown, planned and run
(tests/data/clusters/custom-accelerator.yaml: one Ray node with one RTX-4090, a type outside
orch's catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, own_cluster, run_orch

pytestmark = pytest.mark.ray
CLUSTER = REPO / "tests" / "data" / "clusters" / "custom-accelerator.yaml"
WHERE = REPO / "tests" / "data" / "placement"


@pytest.fixture(scope="module")
def custom_home(orch_home):
    with own_cluster(str(CLUSTER), "orch-cus-") as home:
        yield home


def _job(tmp_path: Path, accelerator: str) -> Path:
    (tmp_path / "out").mkdir(exist_ok=True)
    spec = {"name": "custom", "entrypoint": "where.py:train_loop", "working_dir": str(WHERE),
            "config": {"out": str(tmp_path / "out")}, "resources": {"accelerator": accelerator, "memory": "1GiB"}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    return path


def test_a_declared_custom_type_is_shown_planned_and_runs(custom_home, tmp_path):
    shown = run_orch("cluster", "--json")
    assert shown.returncode == 0, shown.stderr
    types = {t["name"]: t for t in json.loads(shown.stdout)["accelerators"]}
    assert types["RTX-4090"] == {"name": "RTX-4090", "family": "gpu", "ray_type": "RTX-4090", "resource": "GPU",
                                 "memory_gib": 24.0, "peak_bf16_tflops": 165.0, "peak_fp32_tflops": 82.6,
                                 "price_per_hour": None, "source": "cluster file"}
    assert "RTX-4090" in run_orch("cluster").stdout

    any_gpu = json.loads(run_orch("plan", str(_job(tmp_path, "GPU:1")), "--json").stdout)
    assert any_gpu["status"] == "placeable" and any_gpu["accelerator"] == "RTX-4090:1"
    assert any_gpu["cost_per_hour"] is None  # no list price declared

    job = _job(tmp_path, "rtx-4090:1")  # as users spell it: any case
    done = run_orch("submit", str(job), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["accelerator"] == "RTX-4090:1"
    placed = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*rank-*.json")]
    assert len(placed) == 1
    assert placed[0]["labels"]["ray.io/accelerator-type"] == "RTX-4090"
    assert len(placed[0]["accelerator_ids"]["GPU"]) == 1


def test_a_type_the_cluster_lacks_is_rejected_with_a_suggestion(custom_home, tmp_path):
    done = run_orch("submit", str(_job(tmp_path, "RTX-4080:1")))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "did you mean RTX-4090" in done.stderr and "accelerators:" in done.stderr
    assert "Traceback" not in done.stderr
