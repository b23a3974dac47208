"""Borrow then reclaim with real Ray jobs: two queues in one cohort on a 2-CPU node.

team-a's preemptible job borrows team-b's idle CPU; when team-b's job arrives
the borrower is preempted after a checkpoint, team-b's job starts within its
own quota, and team-a's job requeues and resumes from its checkpoint.
"""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, own_cluster, run_orch, wait_until_ended

pytestmark = pytest.mark.ray
CLUSTER = REPO / "tests" / "data" / "clusters" / "two-teams.yaml"


@pytest.fixture(scope="module")
def teams(orch_home):
    with own_cluster(str(CLUSTER), "orch-teams-") as home:
        yield home


def _submit(*sets: str) -> str:
    args = [a for s in sets for a in ("--set", s)]
    done = run_orch("submit", "jobs/digits/torch-mlp.yaml", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["job"]


def _view(job: str) -> dict:
    return json.loads(run_orch("status", job, "--json").stdout)


# ~100 s with its own cluster: `make soak`. In `make test`, test_queue_control preempts a job that
# resumes from its checkpoint on real Ray, and tests/unit (test_queue, test_control) hold the cohort rules.
@pytest.mark.soak
def test_borrowed_cpu_is_reclaimed_for_its_owner(teams):
    borrower = _submit("name=borrower", "schedule.queue=team-a", "schedule.preemptible=true",
                       "config.epochs=8", "resources.workers=2")  # 2 CPUs: its own and team-b's
    deadline = time.monotonic() + 300
    while _view(borrower)["metrics"] is None:
        assert time.monotonic() < deadline, _view(borrower)
        time.sleep(1)

    shown = run_orch("cluster", "--json")
    assert shown.returncode == 0, shown.stderr
    queues = json.loads(shown.stdout)["queues"]
    assert queues["team-a"]["used"]["CPU"] == 2 and queues["team-a"]["borrowed"] == {"CPU": 1}
    assert queues["team-a"]["quota"] == {"CPU": 1} and queues["team-a"]["cohort"] == "lab"
    table = run_orch("cluster").stdout
    assert "team-a" in table and "borrowed" in table

    owner = _submit("name=owner", "schedule.queue=team-b", "resources.workers=1", "config.epochs=2")
    owned = wait_until_ended(owner)
    assert owned["state"] == JobState.SUCCEEDED
    lent = _view(borrower)
    states = [h["state"] for h in lent["history"]]
    assert JobState.PREEMPTED in states, states
    preempted = next(h for h in lent["history"] if h["state"] == JobState.PREEMPTED)
    started = next(h for h in owned["history"] if h["state"] == JobState.STARTING)
    assert preempted["at"] <= started["at"]  # the owner started only once the borrower had stopped
    assert "team-b" in (preempted["reason"] or "") or "quota" in (preempted["reason"] or ""), preempted

    done = wait_until_ended(borrower)
    assert done["state"] == JobState.SUCCEEDED and done["attempt"] == 2
    epochs = [m["epoch"] for m in json.loads(run_orch("results", borrower, "--json").stdout)["history"]
              if m["attempt"] == 2]
    assert epochs[0] > 0 and epochs[-1] == 7  # resumed from its checkpoint, not from epoch 0
