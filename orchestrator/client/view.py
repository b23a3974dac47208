"""A job as `orch status` and `orch list` show it, built from the control plane's row (a JSON
dict) and, for one job, its driver's events. PURE of Ray: the client's API fills it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.core import curves, events, hardware
from orchestrator.core.lifecycle import TERMINAL, driver_losses
from orchestrator.core.spec_words import PRECISION_DEFAULT


@dataclass
class JobView:
    """What `orch status` and `orch list` show of one job."""

    job: str
    name: str
    state: str
    priority: int
    queue: str
    accelerator: Any  # the plan's type once planned; before, the request as the spec wrote it (str, list, any_of)
    workers: int | str  # a count; a range ("2..8") for an elastic job not yet planned
    reason: str | None
    restarts: int
    metrics: dict[str, Any] | None
    ray_job_id: str | None
    framework: str = ""
    attempt: int = 0
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    workers_usage: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # worker-group restarts and their causes
    estimate: dict[str, Any] | None = None  # runtime_s, basis, start_in_s, end_in_s: the control plane's
    # The precision in effect: the driver's word once it ran (who applies it: orch, the loop or none);
    # before, the plan's resolution (applied_by None), or the spec's (auto) before a plan.
    precision: str = "auto"
    precision_applied_by: str | None = None
    curve: dict[str, Any] | None = None  # core.curves.curve of the reports; None in `orch list` (no log reads)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

def job_view(row: dict, log_events: list[dict] | None = None) -> JobView:
    """A job as shown; without its events (`orch list`), an ended job's figures are those the
    control plane summed up when it kept its attempts."""
    spec, chosen = row["spec"], row["plan"] or {}
    kept = row.get("summary") if log_events is None and row["state"] in TERMINAL else None
    figures = kept or events.summary(log_events or [])
    failures = [{"attempt": e.get("attempt"), "at": e.get("at"), "causes": e.get("causes", {})}
                for e in log_events or [] if e.get("event") == "worker_failure"]
    return JobView(
        job=row["id"], name=row["name"], state=row["state"], priority=row["priority"], queue=row["queue"],
        accelerator=chosen.get("accelerator") or spec["resources"]["accelerator"],
        workers=chosen.get("workers") or spec["resources"]["workers"], reason=row["reason"],
        restarts=figures["worker_restarts"] + driver_losses(row["history"]),
        failures=failures,
        metrics=figures["metrics"], ray_job_id=row["ray_submission_id"],
        framework=spec["framework"], attempt=row["attempt"], submitted_at=row["submitted_at"],
        started_at=row["started_at"], ended_at=row["ended_at"], history=row["history"], plan=row["plan"],
        estimate=row.get("estimate"), curve=_curve(spec, log_events) if log_events else None,
        **_precision(spec, chosen, log_events or []),
    )


def _precision(spec: dict, plan: dict, log_events: list[dict]) -> dict[str, Any]:
    """What the job's driver said of its precision, else what its plan resolves it to."""
    said = events.last(log_events, "precision")
    if said:
        return {"precision": said["precision"], "precision_applied_by": said["applied_by"]}
    asked = spec.get("precision", PRECISION_DEFAULT)
    if not plan.get("accelerator"):
        return {"precision": asked}
    try:
        request = hardware.parse_accelerator(plan["accelerator"])
    except hardware.AcceleratorError:  # a type this client's catalog does not know: the spec's word
        return {"precision": asked}
    return {"precision": hardware.resolve_precision(asked, request)}


def _curve(spec: dict, log_events: list[dict]) -> dict | None:
    """The checkpoint metric's values over the reports (a sweep: its metric, its best trial's)."""
    sweep = spec.get("sweep")
    metric, mode = (sweep["metric"], sweep["mode"]) if sweep else (spec.get("checkpoint", {}).get("metric"), "min")
    return curves.curve(log_events, metric, mode, sweep=bool(sweep))
