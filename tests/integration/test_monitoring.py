"""`orch status JOB` shows each running worker's CPU and memory use, measured by Ray's node agents."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, run_orch, wait_until_ended

pytestmark = pytest.mark.ray
HOLD_MIB = 300


@pytest.mark.soak  # ~50 s waiting for Ray's node agents; `make soak` (tests/unit/test_worker_usage.py: the rendering)
def test_status_shows_each_workers_cpu_and_memory(local_cluster, tmp_path):
    stop = tmp_path / "stop"
    spec = {"name": "busy-workers", "entrypoint": "busy.py:train_loop",
            "working_dir": str(REPO / "tests/data/placement"),
            "config": {"hold_mib": HOLD_MIB, "stop": str(stop), "max_s": 240},
            "resources": {"workers": 2, "cpus": 1, "memory": "1GiB"}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    done = run_orch("submit", str(path), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)["job"]
    try:
        rows, deadline = [], time.monotonic() + 180
        # Both workers spin a CPU and hold HOLD_MIB: wait for a node report that shows it.
        while not (len(rows) == 2 and all(_busy(row) for row in rows)):
            assert time.monotonic() < deadline, f"no figures showing the workers' load: {rows}"
            time.sleep(2)
            view = json.loads(run_orch("status", job, "--json").stdout)
            assert view["state"] in (JobState.QUEUED, JobState.STARTING, JobState.RUNNING), view
            rows = view["workers_usage"]
        assert {row["role"] for row in rows} == {"train"} and len({row["pid"] for row in rows}) == 2
        text = run_orch("status", job).stdout
        assert text.count("train worker on node") == 2 and "memory" in text
    finally:
        stop.touch()
    assert wait_until_ended(job)["state"] == JobState.SUCCEEDED


def _busy(row: dict) -> bool:
    return (row["cpu_percent"] or 0) >= 25 and (row["rss_bytes"] or 0) >= HOLD_MIB * 2**20
