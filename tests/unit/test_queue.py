"""The queue policy on hand-built snapshots: order, backfill, quotas, borrowing, preemption, fifo, reasons."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from orchestrator.allocator import plan
from orchestrator.queue import (
    TRANSITIONS,
    JobState,
    QueuedJob,
    QueueState,
    RunningJob,
    check_transition,
    decide,
)
from orchestrator.snapshot import ClusterFile, ClusterSnapshot, snapshot_from_cluster
from orchestrator.spec import JobSpec
from tests.unit.synthetic import synthetic_cluster, synthetic_jobs

LAB = {"a": {"quota": {"GPU": 4}, "cohort": "lab", "borrow": {"GPU": 4}},
       "b": {"quota": {"GPU": 4}, "cohort": "lab"}}


def cluster(*entries: dict, queues: dict | None = None) -> ClusterSnapshot:
    data = {"name": "c", "nodes": list(entries), "queues": queues or {}}
    return snapshot_from_cluster(ClusterFile.model_validate(data))


def spec(name: str, priority: int = 100, queue: str = "default", preemptible: bool = False, **resources) -> JobSpec:
    resources.setdefault("memory", "1GiB")
    return JobSpec.model_validate({"name": name, "entrypoint": "train.py:f", "resources": resources,
                                   "schedule": {"priority": priority, "queue": queue, "preemptible": preemptible}})


class Board:
    """A QueueState built the way a control plane builds one: running jobs placed first."""

    def __init__(self, snapshot: ClusterSnapshot):
        self.state = QueueState(snapshot)
        self.seq = 0

    def run(self, name: str, started: float = 0.0, **kwargs) -> RunningJob:
        self.queue(name, **kwargs)
        placed = plan(self.state.pending.get(name).spec, self.state.snapshot)
        assert placed.status == "placeable", placed
        return self.state.start(name, placed, started)

    def queue(self, name: str, **kwargs) -> QueuedJob:
        self.seq += 1
        job = QueuedJob(name, spec(name, **kwargs), self.seq)
        self.state.enqueue(job)
        return job

    def decide(self, policy: str = "orch"):
        return decide(self.state, policy)


def admitted(decision) -> list[str]:
    return [job for job, _ in decision.admit]


def victims(decision) -> list[str]:
    return sorted(job for job, _ in decision.preempt)


# ---- order ---------------------------------------------------------------------------


def test_higher_priority_starts_first():
    board = Board(cluster({"name": "cpu", "cpus": 4, "memory": "16GiB"}))
    board.queue("low", priority=100, cpus=4)
    board.queue("high", priority=500, cpus=4)
    decision = board.decide()
    assert admitted(decision) == ["high"]
    assert decision.waiting["low"].startswith("waits for 4 CPU")


def test_fifo_within_a_priority():
    board = Board(cluster({"name": "cpu", "cpus": 4, "memory": "16GiB"}))
    for name in ("first", "second", "third"):
        board.queue(name, cpus=4)
    decision = board.decide()
    assert admitted(decision) == ["first"]
    assert decision.waiting["third"] == "behind second (same queue, priority and resources)"


# ---- reservations and backfill ------------------------------------------------------------


def test_backfill_uses_only_what_the_head_does_not_need():
    board = Board(cluster({"name": "cpu", "count": 2, "cpus": 8, "memory": "32GiB"}))
    board.run("busy", cpus=6)  # cpu-0: 2 free
    board.run("light", cpus=2)  # lands on cpu-0 (best fit): cpu-0 full, cpu-1 empty
    board.run("half", cpus=4)  # cpu-1: 4 free
    board.queue("big", priority=500, cpus=8)
    board.queue("small", cpus=4)
    board.queue("tiny", cpus=1)
    decision = board.decide()
    # cpu-1 is the least busy node: reserved for big, so neither small job may take it.
    assert "cpu-1 reserved for it" in decision.waiting["big"]
    assert decision.waiting["small"].startswith("behind higher-priority job big")
    assert admitted(decision) == []


def test_backfill_runs_small_jobs_on_nodes_the_head_cannot_use():
    board = Board(cluster({"name": "cpu", "cpus": 8, "memory": "32GiB"},
                          {"name": "t4", "cpus": 8, "memory": "32GiB", "accelerator": "T4:1"}))
    board.run("gpu-job", accelerator="T4:1", cpus=1)
    board.queue("needs-gpu", priority=500, accelerator="T4:1", cpus=1)
    board.queue("cpu-small", cpus=2)
    decision = board.decide()
    assert admitted(decision) == ["cpu-small"]
    assert dict(decision.admit)["cpu-small"].nodes == ("cpu-0",)
    assert decision.waiting["needs-gpu"] == "waits for 1 x T4: 0 free, 1 held by job gpu-job; t4-0 reserved for it"


# ---- quotas and borrowing -------------------------------------------------------------


def test_a_queue_at_its_quota_waits_with_the_reason():
    board = Board(cluster({"name": "cpu", "cpus": 16, "memory": "64GiB"}, queues={"q": {"quota": {"CPU": 4}}}))
    board.queue("one", queue="q", cpus=4)
    board.queue("two", queue="q", cpus=4)
    board.queue("other", cpus=4)
    decision = board.decide()
    assert admitted(decision) == ["one", "other"]
    assert decision.waiting["two"] == "queue q is at its quota (CPU 4 of 4)"


def test_small_jobs_of_a_queue_wait_behind_its_big_job_for_quota():
    board = Board(cluster({"name": "cpu", "cpus": 16, "memory": "64GiB"}, queues={"q": {"quota": {"CPU": 4}}}))
    board.run("running", queue="q", cpus=2)
    board.queue("big", queue="q", cpus=4)
    board.queue("small", queue="q", cpus=1)
    decision = board.decide()
    assert admitted(decision) == []
    assert decision.waiting["big"] == "queue q would exceed its quota (CPU 2 held + 4 needed > 4)"
    assert decision.waiting["small"] == "behind big in queue q, which waits for the queue's CPU quota"


@pytest.mark.parametrize(("b_holds", "expected"), [(0, ["a1", "a2"]), (4, ["a1"])])
def test_borrowing_what_the_cohort_leaves_unused(b_holds, expected):
    board = Board(cluster({"name": "a100", "count": 3, "cpus": 16, "memory": "64GiB", "accelerator": "A100:4"},
                          queues=LAB))
    if b_holds:
        board.run("b-job", queue="b", accelerator=f"A100:{b_holds}")
    board.queue("a1", queue="a", accelerator="A100:4")
    board.queue("a2", queue="a", accelerator="A100:4")
    decision = board.decide()
    assert admitted(decision) == expected
    if b_holds:
        assert decision.waiting["a2"] == ("queue a is at its quota (GPU 4 of 4); borrowing from cohort lab "
                                          "(up to 4) it may hold 0 more now")


def test_borrow_limit_caps_borrowing():
    queues = {"a": {"quota": {"GPU": 4}, "cohort": "lab", "borrow": {"GPU": 2}}, "b": {"quota": {"GPU": 8}, "cohort": "lab"}}
    board = Board(cluster({"name": "a100", "count": 4, "cpus": 16, "memory": "64GiB", "accelerator": "A100:4"},
                          queues=queues))
    for name in ("a1", "a2", "a3"):
        board.queue(name, queue="a", accelerator="A100:2")
    decision = board.decide()
    assert admitted(decision) == ["a1", "a2", "a3"]  # 6 = quota 4 + borrow 2
    board.queue("a4", queue="a", accelerator="A100:1")
    for name, placed in decision.admit:
        board.state.start(name, placed)
    assert "queue a is at its quota (GPU 6 of 4, 2 borrowed)" in board.decide().waiting["a4"]


def reclaim_board(preemptible: bool) -> Board:
    board = Board(cluster({"name": "a100", "count": 2, "cpus": 16, "memory": "64GiB", "accelerator": "A100:4"},
                          queues=LAB))
    board.run("a-own", queue="a", accelerator="A100:4", priority=900)
    board.run("a-borrowed", queue="a", accelerator="A100:4", priority=900, preemptible=preemptible)
    board.queue("b-job", queue="b", accelerator="A100:4", priority=10)
    return board


def test_reclaim_preempts_a_preemptible_borrower_whatever_its_priority():
    board = reclaim_board(preemptible=True)
    decision = board.decide()
    assert victims(decision) == ["a-borrowed"]
    assert decision.preempted_for == {"a-borrowed": "b-job"}
    assert decision.waiting["b-job"] == "preempting a-borrowed to start"
    board.state.stop("a-borrowed")  # the control plane stops it after a checkpoint
    assert admitted(board.decide()) == ["b-job"]


def test_a_non_preemptible_borrower_is_never_preempted():
    decision = reclaim_board(preemptible=False).decide()
    assert decision.preempt == []
    assert decision.waiting["b-job"].startswith("waits for 4 x A100: 0 free, 8 held by jobs a-borrowed, a-own")


def test_reclaim_takes_only_what_is_borrowed():
    board = reclaim_board(preemptible=True)
    board.state.stop("a-borrowed")
    board.run("a-small", queue="a", accelerator="A100:4", priority=900, preemptible=True)
    board.state.stop("a-own")  # queue a now holds exactly its quota: nothing to reclaim
    board.run("default-job", accelerator="A100:4")
    assert board.decide().preempt == []


def test_a_job_already_preempted_for_is_not_preempted_for_again():
    state = reclaim_board(preemptible=True).state
    running = [replace(job, stopping=job.id == "a-borrowed") for job in state.running.values()]
    state = QueueState.build(state.snapshot, [state.pending.get("b-job")], running)  # as a control plane does
    decision = decide(state)
    assert decision.preempt == []
    assert decision.waiting["b-job"] == "waits for preempted job a-borrowed to stop"


# ---- priority preemption ------------------------------------------------------------------


def victim_board(big_preemptible: bool = True) -> Board:
    board = Board(cluster({"name": "a100", "cpus": 32, "memory": "64GiB", "accelerator": "A100:8"}))
    board.run("low-big", priority=10, preemptible=big_preemptible, accelerator="A100:4", started=1)
    board.run("low-small", priority=10, preemptible=True, accelerator="A100:2", started=2)
    board.run("mid", priority=50, preemptible=True, accelerator="A100:2", started=3)
    return board


@pytest.mark.parametrize(("gpus", "big_preemptible", "expected"), [
    (4, True, ["low-big"]),  # fewest victims
    (2, True, ["low-small"]),  # lowest priority, smallest sufficient set
    (6, True, ["low-big", "low-small"]),  # lowest priority before mid
    (4, False, ["low-small", "mid"]),  # never a non-preemptible job
    (8, False, []),  # preempting cannot make it fit: preempt nothing
])
def test_choice_of_victims(gpus, big_preemptible, expected):
    board = victim_board(big_preemptible)
    board.queue("urgent", priority=500, accelerator=f"A100:{gpus}")
    assert victims(board.decide()) == expected


def test_equal_priority_never_preempts():
    board = victim_board()
    board.queue("peer", priority=10, accelerator="A100:4")
    assert board.decide().preempt == []


# ---- fifo --------------------------------------------------------------------------------


def test_fifo_blocks_at_the_head():
    board = Board(cluster({"name": "cpu", "count": 2, "cpus": 4, "memory": "16GiB"}))
    board.run("running", cpus=2)
    board.run("running-2", cpus=2)  # cpu-0 full, cpu-1 empty
    board.run("running-3", cpus=1)
    board.queue("big", cpus=4)
    board.queue("small", cpus=1)
    board.queue("urgent", priority=900, cpus=1)
    fifo = board.decide("fifo")
    assert admitted(fifo) == []
    assert fifo.waiting["big"].startswith("waits for 4 CPU")
    assert fifo.waiting["urgent"] == "behind big (fifo: the first job in the queue blocks all behind it)"
    assert admitted(board.decide()) == ["urgent"]  # orch: priority first


def test_fifo_ignores_quotas():
    board = Board(cluster({"name": "cpu", "cpus": 16, "memory": "64GiB"}, queues={"q": {"quota": {"CPU": 4}}}))
    board.queue("one", queue="q", cpus=4)
    board.queue("two", queue="q", cpus=4)
    assert admitted(board.decide("fifo")) == ["one", "two"]


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown policy 'lifo'"):
        decide(QueueState(cluster({"name": "cpu", "cpus": 1, "memory": "1GiB"})), "lifo")


# ---- states ------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "ok"), [
    ("QUEUED", "STARTING", True), ("STARTING", "RUNNING", True), ("RUNNING", "SUCCEEDED", True),
    ("RUNNING", "PREEMPTED", True), ("PREEMPTED", "QUEUED", True), ("QUEUED", "CANCELLED", True),
    ("SUCCEEDED", "RUNNING", False), ("QUEUED", "RUNNING", False), ("PREEMPTED", "RUNNING", False),
])
def test_transitions(old, new, ok):
    if ok:
        assert check_transition(old, new) is JobState(new)
    else:
        with pytest.raises(ValueError, match=f"cannot go from {old} to {new}"):
            check_transition(old, new)


def test_terminal_states():
    assert {s for s in JobState if s.is_terminal} == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    assert set(TRANSITIONS) == set(JobState)


# ---- speed -------------------------------------------------------------------------------


def test_a_thousand_queued_jobs_on_a_hundred_nodes_decide_in_milliseconds():
    snapshot = synthetic_cluster(100, busy=0.7, seed=3)
    state = QueueState(snapshot)
    for i, job_spec in enumerate(synthetic_jobs(1000, seed=4)):
        state.enqueue(QueuedJob(job_spec.name, job_spec, i))
    decide(state)  # the allocator remembers job shapes per cluster layout
    began = time.perf_counter()
    decision = decide(state)
    elapsed = time.perf_counter() - began
    assert len(decision.admit) + len(decision.waiting) == 1000
    assert elapsed < 0.5, f"{elapsed * 1000:.0f} ms"
