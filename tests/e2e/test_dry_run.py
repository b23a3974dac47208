"""`orch submit --dry-run`: the plan and the exact Ray Job request, and nothing queued or started."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import run_orch

SPEC = "jobs/digits/torch-mlp.yaml"


def test_without_a_cluster_it_plans_on_this_machine_and_starts_nothing(tmp_path):
    home = tmp_path / "home"
    done = run_orch("submit", SPEC, "--dry-run", "--json", env={"ORCH_HOME": str(home), "ORCH_ADDRESS": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(done.stdout)
    assert shown["state"] == JobState.QUEUED and shown["plan"]["nodes"] == ["local-0", "local-0"]
    # What the Ray dashboard's Jobs page shows: the id and what runs, and the orch name as Name.
    readable = f"python -m orchestrator.runners.entry {shown['job']}  # torch train_torch.py:train_loop"
    assert shown["ray_job"]["entrypoint"] == readable
    assert shown["ray_job"]["metadata"]["orch_job"] == shown["job"]
    assert shown["ray_job"]["metadata"]["job_name"] == "digits-mlp"
    assert not (home / "cluster.json").exists()  # no cluster was started for it


def test_a_job_that_cannot_fit_exits_2_with_the_reason(tmp_path):
    done = run_orch("submit", SPEC, "--dry-run", "--set", "resources.accelerator=A100:1",
                    env={"ORCH_HOME": str(tmp_path / "home"), "ORCH_ADDRESS": ""})
    assert done.returncode == 2 and "A100" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.ray
def test_on_a_cluster_the_control_plane_plans_it_and_queues_nothing(local_cluster):
    before = json.loads(run_orch("list", "--json").stdout)
    done = run_orch("submit", SPEC, "--dry-run", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(done.stdout)
    assert shown["plan"]["scaling"]["num_workers"] == 2 and "queue_position" in shown["plan"]
    assert shown["ray_job"]["runtime_env"]["env_vars"]["ORCH_JOB"].startswith("<job payload")
    assert json.loads(run_orch("list", "--json").stdout) == before


@pytest.mark.ray
def test_on_a_cluster_an_init_from_job_without_a_checkpoint_exits_2_as_submit_does(local_cluster):
    done = run_orch("submit", SPEC, "--dry-run", "--set", "init_from=job:no-such-job")
    assert done.returncode == 2 and "init_from: job:no-such-job: no such job" in done.stderr, done.stderr
