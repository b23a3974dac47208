"""A planned job as a Ray Job request: entrypoint, runtime env and metadata.

One function builds it for both the control plane (at admission) and
`orch submit --dry-run` (to show it), so what is printed is what is sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.core import allocator, hardware, scaling
from orchestrator.core.protocol import ENTRYPOINT, META, PAYLOAD_ENV, PRECISION_ENV, SIMULATED_LABEL
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec

TRIAL_KEYS = ("accelerator", "workers", "per_worker", "nodes", "scaling")  # a stored sweep trial slot
RAY_JOB_NAME = "job_name"  # the metadata key the Ray dashboard's Jobs page shows (and filters) as Name
_SHELL_PLAIN = re.compile(r"[A-Za-z0-9_.:/@%+=-]+")  # a word sh reads as itself
_NOT_COMMENT_SAFE = re.compile(r"[^A-Za-z0-9_.:/@%+= -]")  # a newline would end the comment and start a command


def plan_record(plan: allocator.Plan, snapshot: ClusterSnapshot) -> dict[str, Any]:
    """The plan as stored with the job: SPEC.md's plan JSON plus its Ray Train settings."""
    chosen = set(plan.nodes)
    simulated = any(n.labels.get(SIMULATED_LABEL) == "true" for n in snapshot.nodes if n.name in chosen)
    record = {**allocator.to_json(plan), "scaling": scaling.scaling_config_kwargs(plan, simulated=simulated)}
    if plan.trials:  # only what the books and the sweep's driver read: a sweep may hold hundreds
        record["trials"] = [{key: value for key, value in plan_record(trial, snapshot).items() if key in TRIAL_KEYS}
                            for trial in plan.trials]
    return record


def record_demand(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """node -> resources a stored plan holds, its sweep's trial slots included (``Plan.demand()``)."""
    return allocator.demand_of((part.get("nodes", ()), part.get("per_worker", {}))
                               for part in (record, *record.get("trials", ())))


@dataclass(frozen=True)
class PlanRecord:
    """A job's stored plan, read once: ``record`` as ``plan_record`` wrote it (what clients are
    served and the driver is sent) and ``demand``, what the books count it as holding."""

    record: dict[str, Any]
    demand: dict[str, dict[str, float]]  # node -> resources, its sweep's trial slots included

    @classmethod
    def read(cls, record: dict[str, Any]) -> PlanRecord:
        return cls(record, record_demand(record))


def launch_request(job_id: str, spec_json: dict, runtime_env: dict, plan: dict, attempt: int,
                   storage: str, secrets_file: str | None = None) -> dict[str, Any]:
    """Entrypoint, runtime env and metadata of one attempt of a job."""
    spec = JobSpec.model_validate(spec_json)
    request = hardware.parse_accelerator(plan["accelerator"])
    shown = {k: v for k, v in plan.items() if k != "scaling"}
    if "trials" in shown:  # the driver needs each slot's accelerator and Ray Train settings only
        shown["trials"] = [{"accelerator": t["accelerator"], "scaling": t["scaling"]} for t in shown["trials"]]
    payload = {"job": job_id, "spec": spec_json, "plan": shown,
               "scaling": plan["scaling"], "storage": storage, "attempt": attempt, "secrets_file": secrets_file}
    env = {**runtime_env.get("env_vars", {}),
           PRECISION_ENV: hardware.resolve_precision(spec.precision, request),
           PAYLOAD_ENV: json.dumps(payload), "PYTHONUNBUFFERED": "1"}
    metadata = {
        f"{META}job": job_id, f"{META}name": spec.name, f"{META}framework": spec.framework,
        f"{META}workers": str(plan["workers"]), f"{META}accelerator": plan["accelerator"],
        f"{META}priority": str(spec.schedule.priority), f"{META}queue": spec.schedule.queue,
        f"{META}preemptible": str(spec.schedule.preemptible).lower(), f"{META}attempt": str(attempt),
        f"{META}plan": json.dumps({key: value for key, value in payload["plan"].items() if key != "trials"}),
    }
    if spec.sweep:  # its slots are in the payload; the dashboard shows how many
        metadata[f"{META}trial_slots"] = str(1 + len(plan.get("trials", ())))
    metadata[RAY_JOB_NAME] = ray_job_name(spec.name, attempt)
    return {"entrypoint": readable_entrypoint(job_id, spec), "runtime_env": {**runtime_env, "env_vars": env},
            "metadata": metadata}


def ray_job_name(name: str, attempt: int) -> str:
    """The Name the Ray dashboard shows for an attempt: a requeued job's attempts are separate
    Ray jobs (``<id>-attemptN``), and the attempt on the row says they are one orch job."""
    return name if attempt <= 1 else f"{name} (attempt {attempt})"


def readable_entrypoint(job_id: str, spec: JobSpec) -> str:
    """The driver's command line as the dashboard shows it: which job, and what it runs.

    The driver reads everything from its payload (``PAYLOAD_ENV``) and ignores its argv;
    the id and the comment are there for a person reading the Jobs page. Ray runs the
    line with ``sh``, so the id is quoted unless plain and the comment keeps to plain
    characters (the spec's fields are validated, a job id sent to the control plane is not).
    """
    kind = " sweep" if spec.sweep else " predict" if spec.predict else ""
    note = _NOT_COMMENT_SAFE.sub("?", f"{spec.framework}{kind} {spec.entrypoint}")
    return f"{ENTRYPOINT} {_shell_word(job_id)}  # {note}"


def _shell_word(text: str) -> str:
    """``text`` as one word for sh (single quotes, as shlex.quote, which the pure core does not import)."""
    return text if _SHELL_PLAIN.fullmatch(text) else "'" + text.replace("'", "'\"'\"'") + "'"
