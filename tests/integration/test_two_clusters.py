"""Two orch clusters on one machine: a job runs on the cluster it was submitted to,
even when another Ray head started on the machine after that cluster did, and Ray's own
helpers inside its workers find that cluster too."""

from __future__ import annotations

import json
import os

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import own_cluster, run_orch, where_job

pytestmark = pytest.mark.ray


def test_a_job_runs_on_its_own_cluster_when_a_newer_one_is_up(local_cluster, tmp_path):
    from orchestrator.adapters.http import http

    first = os.environ["ORCH_HOME"]
    path = where_job(tmp_path, "stays-home", {"workers": 1, "cpus": 1})
    out = tmp_path / "out"
    # The second head starts after the session's; Ray's job supervisor resolves a driver's
    # cluster from its temp dir's "last head started" file.
    with own_cluster(None, "orch-2nd-"):
        done = run_orch("submit", str(path), "--wait", "--json", timeout=300, env={"ORCH_HOME": first})
    assert done.returncode == 0 and json.loads(done.stdout)["state"] == JobState.SUCCEEDED, done.stdout + done.stderr
    ours = {n["node_id"] for n in http(local_cluster.dashboard_url, "/api/v0/nodes")["data"]["result"]["result"]}
    record = json.loads(next(out.glob("*rank-0.json")).read_text())
    assert record["node_id"] in ours
    # Ray's own helpers in workers (Train's placement-group cleaner) look the cluster up with no
    # address: with two heads up that must still be this one, not /tmp/ray's last head or an error.
    from ray._private import services

    assert record["default_address"] == services.canonicalize_bootstrap_address(local_cluster.gcs_address)
