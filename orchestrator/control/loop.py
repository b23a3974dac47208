"""The control plane's loop: it applies the queue policy's decisions to Ray.

`Control.step()` is one round: reconcile job states with Ray, ask jobs at their
time limit to stop, stop those asked (a preemption, a time limit) whose grace has
run out or whose checkpoint arrived (`stops`), then ask the
pure policy (`core.policy.decide`) what to admit and preempt and act on it. Every
change is written to the store before Ray is called, so a control plane
killed at any point resumes from the table. Ray and the cluster are injected
(`jobs`, `snapshot_source`): tests drive `step()` against fakes.

With a `max_scale_source` (the cluster an autoscaler grows, at its largest:
`load.launcher.autoscaling_snapshot`), a job is refused at submit only when it
fits neither the nodes that exist nor the cluster at max scale, and jobs that
need new nodes are launched so that their pending placement groups make the
autoscaler add them (`autoscale.extend`; its docstring has the rules).
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable

from orchestrator.adapters import packages
from orchestrator.adapters.jobs import ENDED_IN_RAY, JobsClient, RayStatus
from orchestrator.adapters import durations
from orchestrator.control import reconcile, stops
from orchestrator.control.etas import (Etas, Runtimes, demand_of, forecast_plan, gpu_types, queue_state,
                                       with_etas)
from orchestrator.control.launcher import Launcher
from orchestrator.control.store import JobRow, Store
from orchestrator.core import allocator, autoscale, estimate, events
from orchestrator.core.errors import ClusterUnavailable, InfeasibleError, JobNotFound
from orchestrator.core.launch import launch_request, plan_record
from orchestrator.core.lifecycle import JobState
from orchestrator.core.masking import redact
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.state import Decision, QueueState
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec

ACTIVE = (JobState.STARTING, JobState.RUNNING)
PREEMPT_GRACE_S = 60.0
LOG_TAIL_CHARS = 256 * 1024  # how much of an ended attempt's log the store keeps for `orch logs`
PACKAGE_SWEEP_S = 600.0  # how often kept job packages no job uses are looked for
SNAPSHOT_TTL_S = 2.0
CANCEL_WAIT_S = 20.0  # a cancel waits this long for a step in progress (clients give up at 30 s)
LOG_READ_TRIES = 3  # steps an ended attempt waits for Ray to serve its log before it moves on without


@dataclass(frozen=True)
class _Live:
    """One read of the live queue: the policy's state, the snapshot its plans place on, the rows
    of the jobs holding resources and, with an autoscaler, its books."""

    state: QueueState
    snapshot: ClusterSnapshot
    running: list[JobRow]
    books: autoscale.Books | None = None


class Control:
    """Owns the queue: admits, launches, watches, preempts and requeues jobs."""

    def __init__(self, store: Store, jobs: JobsClient, snapshot_source: Callable[[], ClusterSnapshot],
                 storage: str, clock: Callable[[], float] = time.time, grace_s: float = PREEMPT_GRACE_S,
                 max_scale_source: Callable[[], ClusterSnapshot] | None = None):
        self.store, self.jobs, self.snapshot_source = store, jobs, snapshot_source
        self.storage, self.clock, self.grace_s = storage, clock, grace_s
        self.max_scale_source = max_scale_source  # None: every node exists already (no autoscaler)
        self._wake = threading.Event()
        self._step_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._snapshot: tuple[float, ClusterSnapshot] | None = None
        self._log_misses: dict[str, int] = {}  # submission -> steps its ended log could not be read
        self.packages = packages.PackageStore(store.folder / packages.FOLDER)  # on the head, as the store
        self.launcher = Launcher(store, jobs, self.packages, storage, clock)
        self.runtimes = Runtimes(store)  # each job's expected running time, for the policy and ETAs
        self.etas = Etas()  # the latest forecast of the queue, refreshed beside the loop

    # ---- requests from clients --------------------------------------------------

    def submit(self, submission: dict[str, Any]) -> tuple[JobRow, bool]:
        """Queue a job unless it can never fit; idempotent by job id."""
        spec = JobSpec.model_validate(submission["spec"])
        self._refuse_infeasible(spec)
        self.launcher.require_code(submission["request"]["runtime_env"].get("working_dir"))
        row, created = self.store.insert(submission["job"], spec, submission["spec"], submission["request"],
                                         secrets=submission.get("secrets"))
        self._wake.set()
        return row, created

    def _refuse_infeasible(self, spec: JobSpec) -> None:
        max_scale = self.max_scale_source() if self.max_scale_source else None
        _refuse_infeasible(spec, _all_free(self._recent_snapshot()), max_scale)

    def plan(self, spec: dict | JobSpec, eta: bool = False) -> dict[str, Any]:
        """SPEC.md's plan JSON against what orch's jobs hold now, with the queue position; with an
        autoscaler, a job that needs nodes it can add is queued for them, as submit would take it.
        ``eta``: with when it would start and end if submitted now (`orch plan`; a submit does not
        wait for a forecast)."""
        spec = spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec)
        running = self.store.all(ACTIVE)
        if self.max_scale_source is None:
            snapshot = _held(_all_free(self._recent_snapshot()), running)
            body = _record(allocator.plan(spec, snapshot), snapshot)
        else:
            max_scale = self.max_scale_source()
            books = autoscale.account(_all_free(self._recent_snapshot()), max_scale,
                                      [(row.id, demand_of(row)) for row in running])
            body = _assessed(spec, autoscale.assess(spec, books.snapshot, max_scale))
        ahead = self.store.count_queued(spec.schedule.priority)
        runs = durations.past_runs(self.store.all([JobState.SUCCEEDED], name=spec.name)).get(spec.name, [])
        found = estimate.estimate_json(spec, body, runs)
        if eta and body["status"] != "infeasible":
            body, when = self._forecast_plan(spec, body, found["runtime_s"], runs)
            found.update(when)
        return {**body, "queue_position": ahead, "estimate": found}

    def _forecast_plan(self, spec: JobSpec, body: dict[str, Any], runtime_s: float | None,
                       runs: list[estimate.PastRun]) -> tuple[dict[str, Any], dict[str, float | None]]:
        """The plan as the policy would make it for a job submitted now, and when it would start
        and end (`etas.forecast_plan`)."""
        live = self._live(self._recent_snapshot)
        chosen, when = forecast_plan(live.state, spec, runtime_s, estimate.by_type(spec, runs, gpu_types(live.snapshot)))
        return (body if chosen is None else {**body, **_record(chosen, live.snapshot)}), when

    def dry_run(self, submission: dict[str, Any]) -> dict[str, Any]:
        """The plan and the Ray Job request admission would send for ``submission`` now; queues nothing."""
        self._refuse_infeasible(JobSpec.model_validate(submission["spec"]))
        planned = self.plan(submission["spec"])
        record = {key: value for key, value in planned.items() if key not in ("queue_position", "estimate")}
        request = launch_request(submission["job"], submission["spec"], submission["request"]["runtime_env"],
                                 record, 1, self.storage)
        return {"plan": planned, "ray_job": request}

    def cluster(self) -> dict[str, Any]:
        """The nodes as Ray reports them now, and each queue's quota, use and borrowing (``orch cluster``)."""
        return cluster_report(self.snapshot_source(), self.store.all(ACTIVE))

    def _recent_snapshot(self) -> ClusterSnapshot:
        """The cluster as read at most SNAPSHOT_TTL_S ago, for answering clients: submit and
        plan use its totals (orch accounts for its own jobs' holdings), which change only when
        nodes come or go, and a GCS read per request would serialise parallel submits."""
        with self._snapshot_lock:
            now = time.monotonic()
            if self._snapshot is None or now - self._snapshot[0] > SNAPSHOT_TTL_S:
                self._snapshot = (now, self.snapshot_source())
            return self._snapshot[1]

    def cancel(self, job: str) -> tuple[JobRow, bool]:
        """The job (a name: its latest job that has not ended) after the cancel, and whether this
        call ended it (False: it had ended already)."""
        # Under the step lock: a step that is launching the job hands it to Ray first, so a
        # cancelled job is never launched afterwards, nor left running in Ray.
        if not self._step_lock.acquire(timeout=CANCEL_WAIT_S):
            raise ClusterUnavailable("the control plane is busy with a long step (Ray slow to answer?); "
                                     "nothing was cancelled: try again")
        try:
            return self._cancel(job)
        finally:
            self._step_lock.release()

    def _cancel(self, job: str) -> tuple[JobRow, bool]:
        row = self.store.find(job, unfinished_first=True)
        if row is None:
            raise JobNotFound(job)
        ended, now = False, self.clock()
        if row.state == JobState.QUEUED:
            ended = self.store.transition(row.id, JobState.CANCELLED, "cancelled while queued", now, ended_at=now)
        elif row.state in ACTIVE:
            self.store.update(row.id, preempt_requested_at=None, reason="cancel requested")
            try:
                self.jobs.stop(row.ray_submission_id)
                self._keep_attempt(row, self._ended_log(row) or "")
            except JobNotFound:
                pass  # written ahead, never handed to Ray (the control plane died between): nothing runs
            self.launcher.forget_secrets(row.ray_submission_id)
            ended = self.store.transition(row.id, JobState.CANCELLED, "cancelled", self.clock(),
                                          ended_at=self.clock())
        return self.store.get(row.id), ended

    def _find(self, job: str) -> JobRow:
        row = self.store.find(job)
        if row is None:
            raise JobNotFound(job)
        return row

    # ---- the loop ---------------------------------------------------------------------

    def run_forever(self, poll_s: float = 0.5) -> None:
        threading.Thread(target=self.etas.run_forever, args=(self.forecast_state,), daemon=True).start()
        swept = 0.0
        while True:
            try:
                self.step()
                if time.monotonic() - swept > PACKAGE_SWEEP_S:
                    self.forget_packages()
                    swept = time.monotonic()
            except Exception:  # Ray briefly unreachable, a bad row: log it, keep serving
                traceback.print_exc()
            self._wake.wait(poll_s)
            self._wake.clear()

    def step(self) -> Decision:
        """One round of reconcile, stop and admit; returns the policy's decision."""
        with self._step_lock:
            self._reconcile()
            stops.ask_at_time_limits(self.store, self.store.all(ACTIVE), self.clock())
            stops.finish(self.store.all(ACTIVE), self.jobs, self.clock(), self.grace_s)
            return self._schedule()

    def _reconcile(self) -> None:
        rows = self.store.all(ACTIVE)
        if not rows:
            return
        ray_jobs = {j["submission_id"]: j for j in self.jobs.list()}
        for row in rows:
            info = ray_jobs.get(row.ray_submission_id)
            if info is None:  # crashed between our write and Ray's accept: launch again
                self.launcher.launch(row, row.plan.record, resubmit=True)
                continue
            self._apply_ray_status(row, info)

    def _apply_ray_status(self, row: JobRow, info: dict) -> None:
        status = info["status"]
        found: list[dict] = []
        if status in ENDED_IN_RAY:
            text = self._ended_log(row)
            if text is None and self._log_misses.get(row.ray_submission_id, 0) < LOG_READ_TRIES:
                return  # the next step tries again: the kept copy and the retry decision need the log
            self._log_misses.pop(row.ray_submission_id, None)
            found = events.parse(text or "")
            self._keep_attempt(row, text or "", found)
            self.launcher.forget_secrets(row.ray_submission_id)
        failed = status == RayStatus.FAILED  # only a failed attempt's rules check the disk for its code
        attempt = reconcile.Attempt(
            row.state, row.reason, row.history, bool(row.preempt_requested_at),
            max_failures=row.spec.failure.max_failures, code_kept=failed and self.launcher.code_kept(row),
            time_limit=row.spec.schedule.time_limit)
        now = self.clock()
        for move in reconcile.moves(attempt, info, found, now):
            reason = self._masked(row, move.reason) if move.reason else None
            self.store.transition(row.id, move.state, reason or None, now, **move.fields)

    def _ended_log(self, row: JobRow) -> str | None:
        """An ended attempt's log, read once, with the job's secret values masked (the kept copy
        outlives the secrets); None, counted, when Ray cannot serve it now."""
        try:
            return self._masked(row, self.jobs.logs(row.ray_submission_id))
        except Exception:
            traceback.print_exc()
            self._log_misses[row.ray_submission_id] = self._log_misses.get(row.ray_submission_id, 0) + 1
            return None

    def _masked(self, row: JobRow, text: str) -> str:
        """``text`` without the job's secret values: what orch stores outlives the secrets."""
        return redact(text, self.store.secrets(row.id).values())

    def _keep_attempt(self, row: JobRow, text: str, found: list[dict] | None = None) -> None:
        """Copy an ended attempt's events and log tail into the store (Ray's go with the cluster)."""
        if text:
            self.store.keep_attempt(row.id, row.attempt, events.parse(text) if found is None else found,
                                    text[-LOG_TAIL_CHARS:])
            self.store.keep_summary(row.id, events.summary(events.tagged(self.store.kept_events(row.id))))

    def _schedule(self) -> Decision:
        live = self._live(self.snapshot_source)
        state, notes = live.state, {}
        if live.books is None:
            decision = decide(state)
        else:
            decision, notes = autoscale.extend(state, decide(state), self.max_scale_source())
            _note_nodes_coming(self.store, live.running, live.books)
        for job_id, plan in decision.admit:
            self.launcher.launch(self.store.get(job_id), plan_record(plan, live.snapshot))
            if job_id in notes and self.store.get(job_id).state == JobState.STARTING:
                self.store.update(job_id, reason=notes[job_id])
        for victim, reason in decision.preempt:
            self.store.update(victim, preempt_requested_at=self.clock(), reason=reason)
        for job_id, reason in decision.waiting.items():
            self.store.update(job_id, reason=reason)
        return decision

    def _live(self, snapshot_source: Callable[[], ClusterSnapshot]) -> _Live:
        """The policy's input now, from the store and ``snapshot_source``: with an autoscaler, what
        the running jobs hold as ``autoscale.account`` counts it (nodes still coming included)."""
        queued, running, now = self.store.all([JobState.QUEUED]), self.store.all(ACTIVE), self.clock()
        cluster = snapshot_source()
        runtimes = self.runtimes.of([*queued, *running], gpu_types(cluster))
        if self.max_scale_source is None:
            snapshot = _held(_all_free(cluster), running)
            return _Live(queue_state(queued, running, snapshot, now, runtimes), snapshot, running)
        books = autoscale.account(_all_free(cluster), self.max_scale_source(),
                                  [(row.id, demand_of(row)) for row in running])
        state = queue_state(queued, running, books.snapshot, now, runtimes, books.demands)
        return _Live(state, books.snapshot, running, books)

    def forecast_state(self) -> QueueState | None:
        """What the ETAs forecast: the live state (the cluster as read for clients, at most a few
        seconds old); None when no job is queued or running."""
        live = self._live(self._recent_snapshot)
        return live.state if live.state.pending or live.state.running else None

    def eta_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Status or list JSON rows with the latest forecast's ETAs in their ``estimate``."""
        return with_etas(rows, self.etas, self.clock())

    def forget_packages(self) -> list[str]:
        """Drop kept packages that no queued or active job uses and nothing used for a while."""
        return self.launcher.forget_code(self.store.all([JobState.QUEUED, *ACTIVE]))


def _refuse_infeasible(spec: JobSpec, live: ClusterSnapshot, max_scale: ClusterSnapshot | None) -> None:
    """InfeasibleError, with the reasons, for a job that can never fit this cluster (with an
    autoscaler, ``max_scale``: it may fit nodes the autoscaler can still launch)."""
    decision = allocator.plan(spec, live) if max_scale is None else autoscale.feasible(spec, live, max_scale)
    if isinstance(decision, allocator.Infeasible):
        raise InfeasibleError(spec.name, list(decision.reasons)
                              or [f"{option}: {reason}" for option, reason in decision.rejected])


def _note_nodes_coming(store: Store, running: list[JobRow], books: autoscale.Books) -> None:
    """A running job's reason says it waits for the autoscaler while nodes it needs are coming;
    cleared once they joined. Other reasons (a preemption, a cancel) are left as they are."""
    for row in running:
        text = books.waiting.get(row.id)
        want = f"{autoscale.WAITS}: {text}" if text else None
        mine = row.reason is None or row.reason.startswith(autoscale.WAITS)
        if mine and row.reason != want:
            store.update(row.id, reason=want)


def cluster_report(snapshot: ClusterSnapshot, running: list[JobRow]) -> dict[str, Any]:
    """Nodes with total, free and labels; queues with what their jobs hold now (from orch's plans,
    a sweep's trial slots included) and how much of that is borrowed (over the quota); the
    accelerator types, catalogued or custom, with their figures."""
    usage: dict[str, dict[str, float]] = {}
    for row in running:
        held = usage.setdefault(row.queue, {})
        for resources in demand_of(row).values():
            for resource, amount in resources.items():
                held[resource] = held.get(resource, 0.0) + amount
    queues = {}
    for name, config in snapshot.queues.items():
        used, quota = usage.get(name, {}), config.quota
        borrowed = {k: v - quota[k] for k, v in used.items() if quota is not None and k in quota and v > quota[k]}
        queues[name] = {**asdict(config), "used": used, "borrowed": borrowed}
    nodes = [{"name": n.name, "node_id": n.node_id, "total": dict(n.total), "free": dict(n.free),
              "labels": dict(n.labels)} for n in snapshot.nodes]
    return {"name": snapshot.name, "nodes": nodes, "queues": queues,
            "accelerators": [acc.to_json() for acc in snapshot.accelerator_types()]}


def _record(decision: allocator.Plan | allocator.Infeasible, snapshot: ClusterSnapshot) -> dict[str, Any]:
    """SPEC.md's plan JSON, with a plan's Ray Train settings (as stored at admission)."""
    return plan_record(decision, snapshot) if isinstance(decision, allocator.Plan) else allocator.to_json(decision)


def _assessed(spec: JobSpec, assessment: autoscale.Assessment) -> dict[str, Any]:
    """SPEC.md's plan JSON for an autoscaler's assessment: a job for nodes still to come is queued for them."""
    if assessment.plan is None:
        return allocator.to_json(allocator.Infeasible(spec.name, (), (assessment.reason,)))
    body = _record(assessment.plan, assessment.snapshot)
    if assessment.status == "autoscale":
        body.update(status="queued", reasons=[assessment.reason])
    return body


def _all_free(snapshot: ClusterSnapshot) -> ClusterSnapshot:
    """The cluster with nothing held: orch accounts for its own jobs (see `_held`)."""
    return snapshot.with_free({n.name: dict(n.total) for n in snapshot.nodes})


def _held(snapshot: ClusterSnapshot, running: list[JobRow]) -> ClusterSnapshot:
    """Subtract what orch's admitted jobs hold.

    Ray's own free counts lag: a job admitted a moment ago has not created its
    placement group yet. orch's plans are the truth for orch's jobs.
    """
    demand: dict[str, dict[str, float]] = {}
    for row in running:
        for node, resources in demand_of(row).items():
            held = demand.setdefault(node, {})
            for resource, amount in resources.items():
                held[resource] = held.get(resource, 0.0) + amount
    known = {n.name for n in snapshot.nodes}
    return snapshot.allocate({n: d for n, d in demand.items() if n in known})
