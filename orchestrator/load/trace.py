"""Traces for ``orch simulate`` (SPEC.md section 3): JSON Lines, one job a line, as ``TraceJob``s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from orchestrator.core import hardware
from orchestrator.core.errors import SpecError
from orchestrator.core.forms import ACCELERATOR_TYPES
from orchestrator.core.hardware import Accelerator
from orchestrator.core.simulate import TraceJob
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec, Resources, Strict
from orchestrator.core.spec_words import NAME_PATTERN
from orchestrator.core.suggest import did_you_mean
from orchestrator.load.validation import field_problems

ENTRYPOINT = "sim.py:run"  # traces carry no code; a spec needs an entrypoint

Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class TraceLine(Strict):
    """One line of a trace (SPEC.md section 3); schedule fields left out take the spec's defaults."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    job_class: str = Field("default", alias="class")
    submit_s: Seconds
    runtime_s: Positive
    priority: int | None = None
    queue: str | None = None
    preemptible: bool | None = None
    resources: Resources = Resources()
    checkpoint_s: Positive | None = None
    runtime_by_accelerator: dict[str, Positive] | None = None
    estimate_s: Positive | None = None
    time_limit_s: Positive | None = None

    @field_validator("runtime_by_accelerator")
    @classmethod
    def _device_types(cls, value: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        """Keys are device types (``V100``, ``TPU-v4``, ``CPU``) as the catalog or the cluster names them."""
        if value is None:
            return None
        types = (info.context or {}).get(ACCELERATOR_TYPES, {})
        return {key if key.upper() == "CPU" else hardware.lookup(key, types).name: seconds
                for key, seconds in value.items()}


def trace_job(data: dict[str, Any], types: Mapping[str, Accelerator] | None = None) -> TraceJob:
    """A ``TraceJob`` from one decoded trace line; raises pydantic's ValidationError. ``types``:
    the cluster's custom accelerator types (``hardware.by_name``), beside the catalog's."""
    line = TraceLine.model_validate(data, context={ACCELERATOR_TYPES: types or {}})
    schedule = {key: getattr(line, key) for key in ("priority", "queue", "preemptible") if key in data}
    spec = JobSpec.model_validate({"name": line.name, "entrypoint": ENTRYPOINT, "resources": line.resources,
                                   "schedule": schedule})
    return TraceJob(line.name, line.job_class, line.submit_s, line.runtime_s, spec, line.checkpoint_s,
                    line.runtime_by_accelerator, line.estimate_s, line.time_limit_s)


def load_trace(path: str | Path, types: Mapping[str, Accelerator] | None = None) -> list[TraceJob]:
    """Read a JSON Lines trace; a bad line raises ``SpecError`` naming its line number. A job may
    name the catalog's accelerator types and ``types`` (the cluster's custom ones)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise SpecError(f"cannot read the trace: {error.strerror}", source=str(path)) from None
    jobs, seen = [], {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            job = trace_job(json.loads(text), types)
        except json.JSONDecodeError as error:
            raise SpecError(f"{where}: not valid JSON: {error.msg} (column {error.colno})") from None
        except ValidationError as error:
            raise SpecError([f"{where}: {line}" for line in field_problems(error, "(line)")],
                            source=str(path)) from None
        if job.name in seen:
            raise SpecError(f"{where}: name {job.name!r} is used on line {seen[job.name]} already")
        seen[job.name] = number
        jobs.append(job)
    return jobs


def check_queues(trace: Iterable[TraceJob], snapshot: ClusterSnapshot, source: str) -> None:
    """SpecError naming each trace job whose queue the cluster file does not define (as submit refuses it)."""
    names = sorted(snapshot.queues)
    problems = []
    for job in trace:
        queue = job.spec.schedule.queue
        if queue not in snapshot.queues:
            problems.append(f"job {job.name}: queue {queue!r} is not one of the cluster's queues "
                            f"({', '.join(names)}){did_you_mean(queue, names)}")
    if problems:
        raise SpecError(problems, source=source)
