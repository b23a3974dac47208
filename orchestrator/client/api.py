"""orch's library API: what the CLI calls, and what a Python user can call too.

    import orchestrator
    job = orchestrator.submit("jobs/digits/torch-mlp.yaml")
    orchestrator.wait(job["job"])

Jobs go to the cluster's control plane, which queues them and launches Ray
Jobs; metrics and results are read back from the Ray Jobs' logs.

What only planning here, dry runs, cluster files, the dashboard or reading a
stopped cluster's table need (the allocator, the launch request, the cluster
file models, the spec models, the runtime estimates) is imported where it is used:
`orch submit` is a process per job, and scripts run many at once (``submit.py``).
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from orchestrator.adapters import cluster
from orchestrator.adapters.jobs import JobsClient
from orchestrator.client.control_plane import ControlClient
from orchestrator.client.view import JobView, job_view
from orchestrator.core import curves, events
from orchestrator.core.errors import ClusterUnavailable, NotAvailable, SpecError
from orchestrator.core.lifecycle import TERMINAL, JobState
from orchestrator.core.masking import redact, redact_stream, split_env
from orchestrator.core.suggest import did_you_mean
from orchestrator.client import submit as submitting

if TYPE_CHECKING:
    from orchestrator.core.spec import JobSpec
    from orchestrator.adapters.dashboard import DashboardProxy
    from orchestrator.adapters.job_table import KeptJobs
    from orchestrator.adapters.tensorboard import TensorBoard
    from orchestrator.core.hardware import Accelerator


def custom_types(cluster_file: str) -> dict[str, Accelerator]:
    """The custom accelerator types a cluster file (or launcher YAML, RayCluster) has, by
    lower-case name and Ray type, for ``orch validate --cluster``."""
    from orchestrator.core.hardware import by_name
    from orchestrator.load.launcher import snapshot_from_config

    return by_name(snapshot_from_config(cluster_file).custom_types())


# ---- planning and submitting -----------------------------------------------------


submit = submitting.submit  # validate, plan and enqueue: in a module of its own, for what it must not import


def plan(spec: JobSpec | str | Path, *, address: str | None = None, cluster_file: str | None = None) -> dict:
    """The allocator's decision as SPEC.md's plan JSON, without running anything.

    Against a cluster file when given; else against the running cluster (what
    orch's jobs hold now, and the job's queue position); else this machine.
    """
    from orchestrator.core import allocator
    from orchestrator.load.cluster import read_cluster

    spec = submitting.spec_of(spec)
    if cluster_file:
        return _estimated(spec, allocator.to_json(allocator.plan(spec, read_cluster(cluster_file))))
    info = cluster.resolve(address)
    if info is None:
        return _estimated(spec, allocator.to_json(allocator.plan(spec, cluster.local_snapshot())))
    return ControlClient(info).plan({"spec": spec.model_dump(mode="json"), "eta": True})


def _estimated(spec: JobSpec, body: dict) -> dict:
    """A plan made here, where no job history is at hand: its estimate rests on the spec alone."""
    from orchestrator.core import estimate

    return {**body, "estimate": estimate.estimate_json(spec, body, [])}


def up(cluster_file: str | None = None, progress=print) -> cluster.ClusterInfo:
    """Start the local (or a simulated, from a cluster file) Ray cluster, or return the running one."""
    from orchestrator.load.cluster import read_cluster

    return cluster.up(cluster_file, progress, read=read_cluster)


def down(progress=print) -> bool:
    """Stop what orch started on this machine; False when nothing was running."""
    return cluster.down(progress)


def dashboard(address: str | None = None, port: int = 0) -> DashboardProxy:
    """The cluster's Ray dashboard on 127.0.0.1:``port`` (0: a free port) through a proxy that adds
    the cluster token; run it with ``serve_forever()``. ClusterUnavailable (exit 3) when orch has
    no token the cluster takes: the proxy would only show the dashboard's token prompt."""
    from orchestrator.adapters import dashboard as proxy

    info = cluster.require(address)
    return proxy.DashboardProxy(info.dashboard_url, proxy.checked_token(info.dashboard_url), port)


def dashboard_token(address: str | None = None) -> str:
    """The token the cluster's dashboard asks for, once the cluster has taken it."""
    from orchestrator.adapters import dashboard as proxy

    info = cluster.require(address)
    token = proxy.checked_token(info.dashboard_url)
    if token is None:
        raise ClusterUnavailable(f"the Ray dashboard at {info.dashboard_url} has no token auth (reached with "
                                 "--insecure): it asks for no token, and orch holds none")
    return token


# ---- reading jobs ----------------------------------------------------------------


Note = Callable[[str], None]  # where a read says it shows what orch kept (the CLI: a line on stderr)


def _clients(address: str | None) -> tuple[ControlClient | KeptJobs, JobsClient | None]:
    """The control plane and Ray's Jobs API; with no cluster running here, the job table orch
    kept under its home (read only) and no Ray: ended attempts' events and logs are in it."""
    from orchestrator.adapters.job_table import KeptJobs

    info = cluster.resolve(address)
    if info is None:
        kept = KeptJobs.open(cluster.orch_home())
        if kept is None:
            raise ClusterUnavailable(cluster.NOT_RUNNING)
        return kept, None
    return ControlClient(info), JobsClient(info)


def _say_kept(control: ControlClient | KeptJobs, note: Note) -> None:
    from orchestrator.adapters.job_table import KeptJobs

    if isinstance(control, KeptJobs):
        note(f"note: no orch cluster is running (`orch up` starts one); showing what orch kept in {control.path}")


def _attempt_ids(row: dict) -> list[str]:
    return [row["id"] if n == 1 else f"{row['id']}-attempt{n}" for n in range(1, row["attempt"] + 1)]


def _events(jobs: JobsClient, row: dict) -> list[dict]:
    """Every event of every attempt, in order, each tagged with its attempt number: an ended
    attempt's as the control plane kept them (Ray's go with the cluster), the others' from Ray.
    A cancelled attempt is read from Ray while Ray has it: it was kept as the stop began."""
    kept = {int(attempt): found for attempt, found in (row.get("kept_events") or {}).items()}
    found: dict[int, list[dict]] = {}
    for attempt, submission_id in enumerate(_attempt_ids(row), start=1):
        cancelled_now = attempt == row["attempt"] and row.get("state") == JobState.CANCELLED
        live = jobs is not None and (attempt not in kept or cancelled_now)
        text = jobs.logs(submission_id) if live else ""
        found[attempt] = events.parse(text) if text else kept.get(attempt, [])
    return redact(events.tagged(found), _known_secrets(row))


def list_jobs(address: str | None = None, *, states=(), queue: str | None = None, name: str | None = None,
              limit: int | None = None, note: Note = lambda _: None) -> list[JobView]:
    """Orch's jobs, newest first (from the job table and kept summaries; no log reads): those in
    any of ``states`` (any case), of ``queue``, whose name matches ``name`` (a glob), at most ``limit``."""
    wanted = {_state_name(state) for state in states}
    control, _ = _clients(address)
    _say_kept(control, note)
    views = [job_view(row) for row in reversed(control.list())
             if (not wanted or row["state"] in wanted) and (queue is None or row["queue"] == queue)
             and (name is None or fnmatch.fnmatchcase(row["name"], name))]
    return views if limit is None else views[:max(limit, 0)]


def _state_name(state: str) -> str:
    names = [s.value for s in JobState]
    if state.upper() not in names:
        raise SpecError(f"--state: no state {state!r}{did_you_mean(state.upper(), names)} "
                        f"(states: {', '.join(names)})")
    return state.upper()


def status(job: str, address: str | None = None, usage: bool = False, note: Note = lambda _: None) -> JobView:
    """One job by id or name (the latest of that name), with its latest metrics; with
    ``usage``, its running workers' CPU, memory and GPU use."""
    control, jobs = _clients(address)
    _say_kept(control, note)
    row = control.get(job)
    view = job_view(row, _events(jobs, row))
    if usage and jobs and row["state"] == JobState.RUNNING:
        view.workers_usage = jobs.worker_usage(row["ray_submission_id"])
    return view


def logs(job: str, address: str | None = None, follow: bool = False, poll_s: float = 1.0,
         tail: int | None = None, note: Note = lambda _: None):
    """The current attempt's driver and worker logs: a string, or chunks with follow (which
    waits for a queued job to start); ``tail``: only the last lines (of what is written already)."""
    control, jobs = _clients(address)
    _say_kept(control, note)
    row = control.get(job)
    waiting = f"{row['id']} is {row['state']}: no logs yet ({row['reason'] or 'waiting to start'})\n"
    if follow and jobs and row["state"] not in TERMINAL:
        chunks = redact_stream(_follow(control, jobs, row, waiting, poll_s), _known_secrets(row))
        return chunks if tail is None else _tail_first(chunks, tail)
    if not row["ray_submission_id"]:
        return waiting
    # An ended job's log as the control plane kept it: masked with the job's secrets (whoever
    # asks), and there after a restart. Ray's copy for the rest, masked as far as this shell knows;
    # with the cluster down, only what was kept.
    kept = control.kept_log(row["id"]) if row["state"] in TERMINAL or jobs is None else None
    if kept is None and jobs is None:
        return f"{row['id']} was {row['state']} when the cluster went down: orch kept no log of attempt {row['attempt']}\n"
    text = kept if kept is not None else jobs.logs(row["ray_submission_id"])
    return _tail(redact(text, _known_secrets(row)), tail)


def _tail(text: str, lines: int | None) -> str:
    if lines is None:
        return text
    return "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else ""


def _tail_first(chunks: Iterator[str], lines: int) -> Iterator[str]:
    """The first chunk (what was written before following began) cut to its last ``lines``."""
    for number, chunk in enumerate(chunks):
        yield _tail(chunk, lines) if number == 0 else chunk


def _follow(control: ControlClient, jobs: JobsClient, row: dict, waiting: str, poll_s: float) -> Iterator[str]:
    """Each attempt's log as it is written, until the job ends: a queued job is waited for,
    a preempted one followed again when it restarts."""
    followed = None
    if not row["ray_submission_id"]:
        yield waiting
    while True:
        attempt = row["ray_submission_id"]
        if attempt and attempt != followed:
            if followed:
                yield f"--- {row['id']}: attempt {row['attempt']} ---\n"
            followed = attempt
            yield from jobs.follow_logs(attempt, poll_s, lambda: _moved_on(control, row["id"], attempt))
        if row["state"] in TERMINAL:
            return
        time.sleep(poll_s)
        row = control.get(row["id"])


def _moved_on(control: ControlClient, job: str, attempt: str) -> bool:
    """Whether the job ended or went on to another attempt (so Ray will never run ``attempt``)."""
    row = control.get(job)
    return row["state"] in TERMINAL or row["ray_submission_id"] != attempt


def _known_secrets(row: dict) -> frozenset[str]:
    """The job's secret values as far as this shell knows them (its own environment):
    a loop that prints a secret does not get it shown back by `orch logs`."""
    parts = split_env(row["spec"]["env"])
    return frozenset(os.environ[var] for name, var in parts.from_env.items()
                     if name in parts.secret and os.environ.get(var))


def cluster_view(address: str | None = None) -> dict[str, Any]:
    """``orch cluster``: the nodes, and each queue's quota, use and borrowing, from the control
    plane on the head (so it works through a tunnel to a remote cluster, as the other commands)."""
    info = cluster.require(address)
    return {"dashboard": info.dashboard_url, **ControlClient(info).cluster()}


def cancel(job: str, address: str | None = None) -> dict[str, Any]:
    """Cancel a job (a name: its latest job that has not ended); ``{"job", "state", "cancelled"}``,
    where ``cancelled`` says whether this call ended it (False: it had ended already, as ``state``)."""
    row = ControlClient(cluster.require(address)).cancel(job)
    return {"job": row["id"], "state": row["state"], "cancelled": bool(row.get("cancelled"))}


def results(job: str, address: str | None = None, note: Note = lambda _: None) -> dict[str, Any]:
    """Final and best metrics and checkpoints, and every epoch's report across attempts."""
    control, jobs = _clients(address)
    _say_kept(control, note)
    row = control.get(job)
    found = _events(jobs, row)
    view = job_view(row, found)
    outcome = events.last(found, "result") or {}
    sweep = row["spec"].get("sweep")
    trials = list({e["trial_id"]: {**{k: v for k, v in e.items() if k not in ("event", "at")},
                                   "curve": curves.trial_curve(found, sweep["metric"], e["trial_id"])}
                   for e in found if e.get("event") == "trial"}.values())
    return {"job": view.job, "name": view.name, "state": view.state, "reason": view.reason,
            "metrics": outcome.get("metrics") or view.metrics, "checkpoint": outcome.get("checkpoint"),
            "best_checkpoints": outcome.get("best_checkpoints", []), "path": outcome.get("path"),
            "checkpoint_policy": row["spec"]["checkpoint"], "output": outcome.get("output"),
            "attempts": view.attempt,
            "history": [{**e["metrics"], "attempt": e["attempt"]} for e in found if e.get("event") == "report"],
            # Sweeps: each trial as it last ended (a resumed sweep reruns only unfinished trials).
            "trials": trials, "best_trial": _best_trial(trials, sweep), "curve": view.curve,
            "tensorboard": (events.last(found, "tensorboard") or {}).get("logdir")}


def _best_trial(trials: list[dict], sweep: dict | None) -> dict | None:
    """The trial with the best ``sweep.metric`` (by ``sweep.mode``), its config and metrics."""
    scored = [t for t in trials if sweep and _comparable((t.get("metrics") or {}).get(sweep["metric"]))]
    if not scored:
        return None
    pick = max if sweep["mode"] == "max" else min
    best = pick(scored, key=lambda t: t["metrics"][sweep["metric"]])
    return {"trial_id": best["trial_id"], "config": best["config"], "metrics": best["metrics"]}


def _comparable(value: Any) -> bool:
    """A metric a best trial can be picked by: a finite number (a NaN loss never wins)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def tensorboard(jobs: list[str], address: str | None = None, port: int = 0, progress: Note = lambda _: None,
                note: Note = lambda _: None) -> TensorBoard:
    """TensorBoard on 127.0.0.1 over the jobs' event files, each job a run named by its id (a
    sweep: one run per trial); stop it with ``stop()``."""
    control, ray_jobs = _clients(address)
    _say_kept(control, note)
    runs = {}
    for job in jobs:
        row = control.get(job)
        announced = events.last(_events(ray_jobs, row), "tensorboard")
        if announced is None:
            why = "predict jobs report no curve" if row["spec"].get("predict") else f"it is {row['state']}"
            raise NotAvailable(f"{row['id']} has written no TensorBoard event files ({why}); jobs that train "
                               "write them from their first report")
        runs[row["id"]] = announced["logdir"]
    from orchestrator.adapters import tensorboard as board

    return board.start(runs, port, progress)


def wait(job: str, address: str | None = None, on_update: Callable[[JobView], None] = lambda _: None,
         poll_s: float = 1.0) -> JobView:
    """Block until the job ends, calling ``on_update`` with each new view. A job that had not
    ended when the cluster went down cannot end now: ClusterUnavailable (exit 3) says so."""
    while True:
        kept: list[str] = []
        view = status(job, address, note=kept.append)
        on_update(view)
        if view.state in TERMINAL:
            return view
        if kept:
            raise ClusterUnavailable(f"{view.job} was {view.state} when the cluster went down and cannot end "
                                     "while it is down; start it with `orch up` (the job goes on), then wait again")
        time.sleep(poll_s)
