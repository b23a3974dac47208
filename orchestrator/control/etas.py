"""What the live queue knows of time: each stored job's expected running time (the history's
estimate, `adapters.durations`), what its time limit leaves it, and the ETAs that running the
policy forward from the live state gives (`core.forecast`: the code `orch simulate` runs).

The policy reads the runtimes at every step (estimate-aware backfill); a forecast costs about one
step per start and end it foresees (1.3 s with 1,000 queued jobs, benchmarks/forecast_scale.py),
so it runs beside the loop, every few seconds, and clients read the latest one.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

from orchestrator.adapters import durations
from orchestrator.control.store import JobRow, Store
from orchestrator.core import estimate
from orchestrator.core.allocator import Plan
from orchestrator.core.forecast import Forecast, forecast
from orchestrator.core.lifecycle import JobState, running_s
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.state import QueuedJob, QueueState, RunningJob
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec

HISTORY_TTL_S = 10.0  # how long the past runs read from the store serve the estimates
ETA_EVERY_S = 5.0  # how often the forecast runs, at the least (see `Etas.run_forever`)
PLANNED = "(planned)"  # the job `orch plan` asks about, in the forecast: no job id looks like it


@dataclass(frozen=True)
class Runtime:
    """A stored job's expected running time (None: unknown) and, for a job that leaves the GPU
    type to orch, its running time on each type (`estimate.by_type`)."""

    seconds: float | None
    by_type: Mapping[str, float] | None = None


class Runtimes:
    """Job id -> its `Runtime`, from the job table's history.

    The past runs are read at most every HISTORY_TTL_S; a job's figure is kept until they are
    read again, the job's plan changes (it is estimated on its plan's type once admitted) or the
    cluster's GPU types do, so a step over a thousand queued jobs estimates each once.
    """

    def __init__(self, store: Store, ttl_s: float = HISTORY_TTL_S):
        self.store, self.ttl_s = store, ttl_s
        self._lock = threading.Lock()  # the loop and the forecast thread both ask
        self._read_at: float | None = None
        self._runs: durations.Runs = {}
        self._types: tuple[str, ...] = ()
        self._known: dict[tuple[str, int, bool], Runtime] = {}

    def of(self, rows: Iterable[JobRow], gpu_types: Iterable[str] = ()) -> dict[str, Runtime]:
        with self._lock:
            now, types = time.monotonic(), tuple(sorted(gpu_types))
            if self._read_at is None or now - self._read_at > self.ttl_s or types != self._types:
                self._runs = durations.past_runs(self.store.all([JobState.SUCCEEDED]))
                self._known.clear()
                self._read_at, self._types = now, types
            todo = [row for row in rows if _key(row) not in self._known]
            for row, found in zip(todo, durations.estimates(todo, self._runs).values()):
                by_type = estimate.by_type(row.spec, self._runs.get(row.name, []), types) if not row.plan else None
                self._known[_key(row)] = Runtime(found["runtime_s"], by_type)
            return {row.id: self._known[_key(row)] for row in rows}


UNKNOWN = Runtime(None)


def _key(row: JobRow) -> tuple[str, int, bool]:
    return row.id, row.attempt, row.plan is not None


def queue_state(queued: list[JobRow], running: list[JobRow], snapshot, now: float,
                runtimes: Mapping[str, Runtime] | None = None,
                demands: Mapping[str, dict[str, dict[str, float]]] | None = None) -> QueueState:
    """The policy's input, built from stored rows; ``snapshot`` already excludes what ``running``
    holds. What a running job holds is its stored plan's demand, or ``demands[job]`` when given:
    with an autoscaler, as ``autoscale.account`` counted it (its demand on new nodes moved to the
    nodes that joined, or on the virtual nodes still coming). ``runtimes``: job id -> its
    `Runtime` (`Runtimes.of`); a job's time limit counts what its earlier attempts ran."""
    runtimes = runtimes or {}
    waiting = []
    for r in queued:
        known = runtimes.get(r.id, UNKNOWN)
        waiting.append(QueuedJob(r.id, r.spec, r.seq, known.seconds, _limit_left(r, now), known.by_type))
    holding = []
    for r in running:
        started = r.started_at or now
        left = _limit_left(r, now)
        holding.append(RunningJob(r.id, r.queue, r.priority, r.preemptible,
                                  demand_of(r) if demands is None else demands.get(r.id, {}), started,
                                  stopping=r.preempt_requested_at is not None,
                                  estimate_s=runtimes.get(r.id, UNKNOWN).seconds,
                                  limit_s=None if left is None else now - started + left))
    return QueueState.build(snapshot, waiting, holding, now=now)


def forecast_plan(state: QueueState, spec: JobSpec, runtime_s: float | None,
                  by_type: Mapping[str, float] | None) -> tuple[Plan | None, dict[str, float | None]]:
    """For a job submitted now into ``state`` (last among the jobs of its priority): its plan
    when the policy chooses its type by expected finish (``by_type``: its runtime per type; the
    plan's ``why`` says so), else None; and when it would start and end, from now."""
    limit = spec.schedule.time_limit
    state.enqueue(QueuedJob(PLANNED, spec, math.inf, runtime_s, limit.seconds if limit else None, by_type))
    choice = decide(state).finish.get(PLANNED) if by_type else None
    chosen = None if choice is None else replace(choice.plan, job=spec.name)
    return chosen, forecast(state, until=[PLANNED])[PLANNED].to_json(state.now)


def gpu_types(snapshot: ClusterSnapshot) -> list[str]:
    """The GPU types the cluster has, among which a ``GPU:N`` job's runtime may differ."""
    return [acc.name for acc in snapshot.accelerator_types() if acc.resource == "GPU"]


def _limit_left(row: JobRow, now: float) -> float | None:
    """The running time the job's time limit leaves it from ``now`` (None: no limit)."""
    limit = row.spec.schedule.time_limit
    return None if limit is None else max(limit.seconds - running_s(row.history, now), 0.0)


def demand_of(row: JobRow) -> dict[str, dict[str, float]]:
    """node -> resources a stored plan holds (as ``Plan.demand()`` for a live plan)."""
    return row.plan.demand if row.plan else {}


class Etas:
    """The latest forecast of the live queue: job id -> its expected start and end."""

    def __init__(self, every_s: float = ETA_EVERY_S):
        self.every_s = every_s
        self._found: dict[str, Forecast] = {}

    def refresh(self, state: QueueState | None) -> None:
        self._found = {} if state is None else forecast(state)

    def json(self, job_id: str, now: float) -> dict[str, float | None] | None:
        """``start_in_s``/``end_in_s`` seconds from ``now``; None for a job the forecast did not see."""
        found = self._found.get(job_id)
        return None if found is None else found.to_json(now)

    def run_forever(self, state_now: Callable[[], QueueState | None]) -> None:
        """Forecast ``state_now()`` (None: nothing queued or running) every ``every_s``, or twice
        the last forecast's cost when that is longer: ETAs never take more than a third of a core."""
        while True:
            began = time.monotonic()
            try:
                self.refresh(state_now())
            except Exception:  # a bad row or a store hiccup: the next round tries again
                traceback.print_exc()
            time.sleep(max(self.every_s, 2 * (time.monotonic() - began)))


def with_etas(rows: list[dict[str, Any]], etas: Etas, now: float) -> list[dict[str, Any]]:
    """List or status JSON rows with each one's ETA filled into its ``estimate`` (where forecast)."""
    for row in rows:
        found = etas.json(row["id"], now)
        if found is not None and row.get("estimate") is not None:
            row["estimate"] = {**row["estimate"], **found}
    return rows
