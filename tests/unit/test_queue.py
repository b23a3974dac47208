"""The queue policy on hand-built snapshots: order, backfill, quotas, borrowing, preemption, fifo, reasons."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.core.allocator import plan
from orchestrator.core.lifecycle import TRANSITIONS, JobState, check_transition
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.state import QueuedJob, QueueState, RunningJob
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec
from orchestrator.load.cluster import ClusterFile, snapshot_from_cluster
from benchmarks.synthetic import synthetic_cluster, synthetic_jobs

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
    ("RUNNING", "QUEUED", True), ("CANCELLED", "SUCCEEDED", False),
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


# ---- scale (speed is benchmarks/scheduling_trace.py's and simulate_scale.py's job) ---------


def test_a_thousand_queued_jobs_on_a_hundred_nodes_each_get_an_answer():
    snapshot = synthetic_cluster(100, busy=0.7, seed=3)
    state = QueueState(snapshot)
    for i, job_spec in enumerate(synthetic_jobs(1000, seed=4)):
        state.enqueue(QueuedJob(job_spec.name, job_spec, i))
    decision = decide(state)
    assert len(decision.admit) + len(decision.waiting) == 1000
    assert not {job for job, _ in decision.admit} & set(decision.waiting)


# ---- CPU work on accelerator nodes ---------------------------------------------------------

A100 = {"name": "a100", "cpus": 32, "memory": "128GiB", "accelerator": "A100:4"}


def busy_cpu_board(**queues) -> Board:
    """A full CPU node and an idle A100 node (8 CPUs and 32GiB come with each GPU)."""
    board = Board(cluster({"name": "cpu", "cpus": 4, "memory": "16GiB"}, A100, queues=queues or None))
    board.run("busy", cpus=4)  # cpu-0 full: CPU work can only go to a100-0
    return board


def test_cpu_work_keeps_off_the_cpus_of_devices_a_queued_job_wants_whatever_the_order():
    board = busy_cpu_board()
    board.queue("cpu-job", priority=500, cpus=8)
    board.queue("gpu-job", priority=10, cpus=32, accelerator="A100:4")
    decision = board.decide()
    assert admitted(decision) == ["gpu-job"]
    assert decision.waiting["cpu-job"] == ("waits for CPUs: the free ones are on a100-0, "
                                           "kept for jobs waiting for its devices")


def test_cpu_work_may_use_the_cpus_beyond_the_free_devices_share():
    board = busy_cpu_board()
    board.run("lean-gpu", cpus=2, accelerator="A100:2")  # a100-0: 30 CPUs and 2 GPUs free, 16 CPUs theirs
    board.queue("small", priority=500, cpus=8)
    board.queue("large", priority=500, cpus=16)
    board.queue("gpu-job", priority=10, cpus=8, accelerator="A100:1")
    decision = board.decide()
    assert admitted(decision) == ["small", "gpu-job"]  # small takes 8 of the 14 spare CPUs
    assert decision.waiting["large"].startswith("waits for CPUs: the free ones are on a100-0")


def test_cpu_work_uses_accelerator_nodes_nobody_waits_for():
    board = busy_cpu_board()
    board.queue("cpu-job", cpus=8)
    assert admitted(board.decide()) == ["cpu-job"]


def test_a_device_job_held_back_by_its_queue_limit_keeps_no_cpus():
    board = busy_cpu_board(capped={"quota": {"GPU": 4}})
    board.state.usage["capped"] = {"CPU": 0.0, "GPU": 4.0, "TPU": 0.0, "memory": 0.0}  # as if it ran 4 GPUs elsewhere
    board.queue("gpu-job", priority=500, queue="capped", accelerator="A100:4")
    board.queue("cpu-job", cpus=8)
    decision = board.decide()
    assert admitted(decision) == ["cpu-job"]
    assert decision.waiting["gpu-job"].startswith("queue capped is at its quota (GPU 4 of 4)")


def test_cpu_work_preempts_only_cpu_work():
    board = busy_cpu_board()
    board.run("low-gpu", priority=10, preemptible=True, cpus=32, accelerator="A100:4")
    board.queue("urgent-cpu", priority=500, cpus=8)
    decision = board.decide()
    assert decision.preempt == []  # its CPUs come with the GPUs; requeued, it would want them back
    board.state.stop("busy")
    board.run("low-cpu", priority=10, preemptible=True, cpus=4)
    board.queue("urgent-cpu-2", priority=500, cpus=4)
    assert victims(board.decide()) == ["low-cpu"]


# ---- a preempting job holds its queue's quota -------------------------------------------------


def test_a_preempting_job_holds_its_quota_and_its_queue_does_not_borrow_meanwhile():
    queues = {"q": {"quota": {"CPU": 8}, "cohort": "c", "borrow": {"CPU": 8}},
              "r": {"quota": {"CPU": 8}, "cohort": "c"}}
    board = Board(cluster({"name": "big", "cpus": 8, "memory": "32GiB"},
                          {"name": "small", "cpus": 4, "memory": "16GiB"}, queues=queues))
    board.run("low", priority=10, preemptible=True, cpus=8)  # big-0 full, small-0 free
    board.queue("urgent", priority=500, queue="q", cpus=8)
    board.queue("later", priority=100, queue="q", cpus=4)  # fits small-0 and q's quota, were urgent's not held
    decision = board.decide()
    assert victims(decision) == ["low"] and admitted(decision) == []
    assert decision.waiting["later"] == "queue q does not borrow while urgent preempts to start"
    board.state.stop("low")
    assert admitted(board.decide()) == ["urgent", "later"]  # later borrows r's unused quota now

