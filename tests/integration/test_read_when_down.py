"""After `orch down`, the read commands answer from the job table orch kept under its home:
`orch list --json` and `orch status JOB --json` exit 0 with the job's last state, and say on
stderr that the cluster is down (stdout keeps its JSON shape)."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import own_cluster, run_orch, wait_until_ended, where_job

pytestmark = pytest.mark.ray


def test_list_and_status_read_the_kept_table_after_down(orch_home, tmp_path):
    path = where_job(tmp_path, "kept-after-down", {"workers": 1, "cpus": 1})
    # Its own cluster: `orch down` here must not stop the session's shared one.
    with own_cluster(None, "orch-down-"):
        done = run_orch("submit", str(path), "--json", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        job = json.loads(done.stdout)["job"]
        last = wait_until_ended(job, timeout=300)
        assert last["state"] == JobState.SUCCEEDED, last
        stopped = run_orch("down")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr

        listed = run_orch("list", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert [(v["job"], v["state"]) for v in json.loads(listed.stdout)] == [(job, JobState.SUCCEEDED)]
        assert "no orch cluster is running" in listed.stderr
        shown = run_orch("status", job, "--json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        view = json.loads(shown.stdout)
        assert (view["job"], view["state"], view["accelerator"]) == (job, JobState.SUCCEEDED, last["accelerator"])
        assert view["metrics"] == last["metrics"]  # the kept events, as Ray's were
        results = run_orch("results", job, "--json")
        assert results.returncode == 0 and json.loads(results.stdout)["state"] == JobState.SUCCEEDED, results.stderr
