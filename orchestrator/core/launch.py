"""A planned job as a Ray Job request: entrypoint, runtime env and metadata.

One function builds it for both the control plane (at admission) and
`orch submit --dry-run` (to show it), so what is printed is what is sent.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.core import allocator, hardware, scaling
from orchestrator.core.protocol import ENTRYPOINT, META, PAYLOAD_ENV, PRECISION_ENV, SIMULATED_LABEL
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec

TRIAL_KEYS = ("accelerator", "workers", "per_worker", "nodes", "scaling")  # a stored sweep trial slot


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
    return {"entrypoint": ENTRYPOINT, "runtime_env": {**runtime_env, "env_vars": env}, "metadata": metadata}
