"""``submit``: a job spec validated, planned, packaged and queued on the cluster's control plane.

`orch submit` is a process per job, and scripts start many at once (ten on two cores): each
import costs them. So a spec file goes to a running cluster's control plane as its text to be
checked against the models, which are loaded there already, and this module loads neither
pydantic nor Ray; its files (working_dir, the entry file, ``pip:``) and the submitter's
environment are checked here, where they are. Dry runs, JobSpec objects and a first submit
that has to start the local cluster validate here first.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from orchestrator.adapters import cluster, packages
from orchestrator.client.control_plane import ControlClient
from orchestrator.core.errors import ClusterUnavailable, InfeasibleError, JobNotFound, SpecError
from orchestrator.core.lifecycle import JobState
from orchestrator.core.masking import resolve_env, split_env
from orchestrator.core.protocol import INIT_FROM_ENV, worker_env
from orchestrator.core.spec_words import JOB_SOURCE
from orchestrator.load.draft import read_draft
from orchestrator.load.loopcode import precision_warnings

if TYPE_CHECKING:
    from orchestrator.core.spec import JobSpec


def spec_of(spec: JobSpec | str | Path, overrides=()) -> JobSpec:
    """A spec file validated here (the models: pydantic); a JobSpec as it is. A type outside
    the catalog is the cluster's to judge (its plan rejects what it lacks)."""
    if not isinstance(spec, (str, Path)):
        return spec
    from orchestrator.load.spec import load_spec

    return load_spec(spec, overrides, types=None)

def new_job_id(name: str) -> str:
    """Ids are the name plus a random suffix: names may repeat, ids never do."""
    return f"{name}-{secrets.token_hex(3)}"

def submit(spec: JobSpec | str | Path, *, address: str | None = None, overrides=(),
           dry_run: bool = False, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Validate, plan and enqueue a job; returns ``{"job", "state", "plan"}``.

    A job that can never fit raises InfeasibleError before anything is
    uploaded or created. With ``dry_run`` nothing is started either: the
    result carries the Ray Job request that admission would send.
    """
    if dry_run:
        return _dry_submit(spec_of(spec, overrides), address, progress)
    info = cluster.resolve(address)
    if isinstance(spec, (str, Path)) and info is not None:
        # One process per job, often many at once: the control plane has the models loaded, and plans.
        control = ControlClient(info)
        spec_json, decision = _checked_by(control, spec, overrides)
    else:  # validated here first: no cluster is started for a spec that is not valid
        spec_json = spec_of(spec, overrides).model_dump(mode="json")
        control = ControlClient(info or _start_local(address, progress))
        decision = control.plan({"spec": spec_json})
    runtime_env, secret_values, own = _request(spec_json, progress)
    if decision["status"] == "infeasible":
        raise InfeasibleError(spec_json["name"], decision["reasons"] or [f"{r['option']}: {r['reason']}"
                                                                         for r in decision["rejected"]])
    _resolve_checkpoint(spec_json, runtime_env, address)
    runtime_env["working_dir"] = control.upload_working_dir(spec_json["working_dir"], own, spec_json["excludes"])
    row = control.submit({"job": new_job_id(spec_json["name"]), "spec": spec_json,
                          "request": {"runtime_env": runtime_env}, "secrets": secret_values})
    return {"job": row["id"], "state": row["state"], "plan": decision}

def _checked_by(control: ControlClient, path: str | Path, overrides) -> tuple[dict, dict]:
    """The spec at ``path`` as the control plane validates it (its JSON, working_dir made
    absolute) and its plan. Problems of the models (found there) and of the files (found here)
    come in one SpecError, as ``load_spec`` raises them; this process never loads the models."""
    draft = read_draft(path, overrides)
    answer = control.check({"text": draft.text, "source": draft.source, "overrides": list(draft.overrides)})
    if "problems" in answer:
        draft.report.take(answer["problems"])
    folder = draft.check_files(os.environ)
    draft.raise_problems()
    spec_json = answer.pop("spec")
    return {**spec_json, "working_dir": str(folder) if folder else spec_json["working_dir"]}, answer

def _request(spec_json: dict, progress: Callable[[str], None]) -> tuple[dict, dict[str, str], list[Path]]:
    """A valid spec's Ray Job runtime_env (its working_dir still the folder); the secret values,
    which reach the workers through the control plane, never Ray's job record; and orch's
    folders that the job's package leaves out."""
    env = resolve_env(spec_json["env"], os.environ)
    hidden = split_env(spec_json["env"]).secret
    runtime_env = {"working_dir": spec_json["working_dir"],
                   "env_vars": {**{k: v for k, v in env.values.items() if k not in hidden},
                                **worker_env(spec_json["framework"])}}
    if spec_json["pip"]:  # Ray installs them in a virtualenv of the job's own on each node
        from orchestrator.load.requirements import pip_lines

        runtime_env["pip"] = {"packages": pip_lines(spec_json["pip"], spec_json["working_dir"]), "pip_check": False}
    own = orch_folders_in(spec_json["working_dir"])
    if own:
        progress(left_out_note(own))
    for warning in precision_warnings(spec_json):
        progress(f"warning: {warning}")
    return runtime_env, {name: env.values[name] for name in hidden}, own

def _dry_submit(spec: JobSpec, address: str | None, progress: Callable[[str], None]) -> dict[str, Any]:
    """``submit --dry-run``: the job packaged as submit would (and refused as it would: too big),
    sent nowhere, and the Ray Job request admission would send."""
    spec_json = spec.model_dump(mode="json")
    runtime_env, _, own = _request(spec_json, progress)
    runtime_env["working_dir"] = packages.package_working_dir(spec.working_dir, lambda _: False,
                                                              lambda *_: None, own, spec.excludes)
    return {**_dry_run(spec, new_job_id(spec.name), runtime_env, address), "package": _package_note(spec_json, own)}

def _dry_run(spec: JobSpec, job_id: str, runtime_env: dict, address: str | None) -> dict[str, Any]:
    """What admission would send: asked of the cluster's control plane (its plan against what
    orch's jobs hold, its storage), or with no cluster, planned on this machine. Starts nothing."""
    from orchestrator.core import allocator
    from orchestrator.core.launch import launch_request, plan_record

    info = cluster.resolve(address)
    if info is not None:
        _resolve_checkpoint(spec.model_dump(mode="json"), runtime_env, address)  # as submit would: `job:NAME` must have one
        found = ControlClient(info).dry_run({"job": job_id, "spec": spec.model_dump(mode="json"),
                                             "request": {"runtime_env": runtime_env}})
        return {"job": job_id, "state": JobState.QUEUED.value, **found}
    snapshot = cluster.local_snapshot()
    decision = allocator.plan(spec, snapshot)
    if isinstance(decision, allocator.Infeasible):
        raise InfeasibleError(spec.name, list(decision.reasons))
    record = plan_record(decision, snapshot)
    storage = str(cluster.orch_home() / "storage")
    request = launch_request(job_id, spec.model_dump(mode="json"), runtime_env, record, 1, storage)
    return {"job": job_id, "state": JobState.QUEUED.value, "plan": record, "ray_job": request}

def _start_local(address: str | None, progress) -> cluster.ClusterInfo:
    if address or os.environ.get("ORCH_ADDRESS"):
        raise ClusterUnavailable(f"no orch cluster answers at {address or os.environ['ORCH_ADDRESS']}")
    from orchestrator.client.api import up  # the API's own start, progress and all

    return up(progress=progress)

def _resolve_checkpoint(spec_json: dict, runtime_env: dict, address: str | None) -> None:
    """Point the job at the checkpoint its ``init_from`` / ``predict.model`` names (SpecError if none)."""
    predict = spec_json.get("predict")
    source = predict["model"] if predict else spec_json.get("init_from")
    if source:
        field = "predict.model" if predict else "init_from"
        runtime_env["env_vars"][INIT_FROM_ENV] = checkpoint_of(source, field, address)

def checkpoint_of(source: str, field: str = "init_from", address: str | None = None) -> str:
    """Where ``init_from`` / ``predict.model`` points: a path as written (relative ones are
    read from the job's working_dir), or for ``job:NAME`` that job's best checkpoint (by
    its own checkpoint metric), else its latest. The job must have SUCCEEDED."""
    if not source.startswith(JOB_SOURCE):
        return source
    from orchestrator.client.api import results

    try:
        found = results(source[len(JOB_SOURCE):], address)
    except JobNotFound:
        raise SpecError(f"{field}: {source}: no such job; `orch list` shows the jobs") from None
    if found["state"] != JobState.SUCCEEDED or not found["checkpoint"]:
        raise SpecError(f"{field}: {source}: job {found['job']} is {found['state']} and has "
                        f"{'a' if found['checkpoint'] else 'no'} checkpoint; name a job that SUCCEEDED")
    metric, mode = found["checkpoint_policy"]["metric"], found["checkpoint_policy"]["mode"]
    kept = [c for c in found["best_checkpoints"] if metric and metric in (c["metrics"] or {})]
    if not kept:
        return found["checkpoint"]
    return (max if mode == "max" else min)(kept, key=lambda c: c["metrics"][metric])["path"]

def orch_folders_in(working_dir: str) -> list[Path]:
    """orch's home (its job store with queued jobs' secrets, kept packages, a local cluster's
    storage) where it lies inside ``working_dir``, relative to it: job packages leave it out."""
    home = cluster.orch_home().resolve()
    if Path(working_dir).resolve().is_relative_to(home):
        raise SpecError(f"working_dir: {working_dir} is orch's home (ORCH_HOME) or lies inside it; "
                        "keep the job's code in a folder of its own")
    return packages.inside(working_dir, [home])

def _package_note(spec_json: dict, own: list[Path]) -> dict[str, Any]:
    """What the dry run packaged: the folder, and what its package leaves out besides the
    .gitignore and .rayignore files in it."""
    return {"working_dir": spec_json["working_dir"], "excludes": spec_json["excludes"],
            "default_excludes": packages.default_excludes(), "orch_home_left_out": [f.as_posix() for f in own]}

def left_out_note(folders: list[Path]) -> str:
    shown = ", ".join(f"{folder.as_posix()}/" for folder in folders)
    return f"note: working_dir holds orch's home ({shown}); the job's package leaves it out"
