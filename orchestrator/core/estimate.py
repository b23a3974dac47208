"""How long a job runs: one estimate with the basis it rests on (DESIGN.md "Durations").

PURE: inputs are plain data (the job as a `Target`, past runs as `PastRun`s),
so the rules are table-testable. In order of trust:
1. the job's own history: SUCCEEDED runs of the same name on the same accelerator
   and worker count, the median running time of the last few (`LAST_RUNS`), so a
   job that got faster or slower is tracked and old runs age out;
2. the same name's history on another accelerator or worker count, scaled by the
   catalog's peak throughput for the precision used and, for data-parallel work,
   inversely by the workers;
3. ``hints.runtime``; 4. ``schedule.time_limit`` as an upper bound; else unknown.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterable

from orchestrator.core import hardware
from orchestrator.core.spec import JobSpec

LAST_RUNS = 5  # how many recent runs the median reads: older ones describe code that has changed


@dataclass(frozen=True)
class PastRun:
    """One finished (SUCCEEDED) job: its running time summed over its attempts."""

    name: str
    accelerator: str  # as planned: A100:1, CPU, TPU-v4-16
    workers: int
    runtime_s: float
    precision: str  # as resolved for the run: fp32, bf16 or fp16


@dataclass(frozen=True)
class Target:
    """The job to estimate, on the accelerator and worker count it is (or would be) planned with."""

    name: str
    accelerator: str
    workers: int
    precision: str  # resolved for ``accelerator`` (hardware.resolve_precision)
    data_parallel: bool = True  # its workers split the work (a training job); a sweep's do not
    hint_s: float | None = None  # hints.runtime
    limit_s: float | None = None  # schedule.time_limit


@dataclass(frozen=True)
class Estimate:
    runtime_s: float
    basis: str  # where the figure comes from, as shown to users: "history: 3 runs on A100:1 x2"

    def to_json(self) -> dict[str, Any]:
        # start_in_s/end_in_s come from the forward simulation of the live queue (a later step).
        return {"runtime_s": round(self.runtime_s, 1), "basis": self.basis, "start_in_s": None, "end_in_s": None}


UNKNOWN_JSON = {"runtime_s": None, "basis": None, "start_in_s": None, "end_in_s": None}


def to_json(found: Estimate | None) -> dict[str, Any]:
    """The ``estimate`` member of plan, status and list JSON (members null where unknown)."""
    return found.to_json() if found else dict(UNKNOWN_JSON)


def target_of(spec: JobSpec, planned: dict[str, Any] | None) -> Target:
    """The job on its plan's accelerator and workers (a plan's JSON, as stored or as `orch plan`
    prints it); with no plan yet (or an infeasible one), its first option at the spec's workers."""
    planned = planned or {}
    accelerator = planned.get("accelerator") or str(spec.resources.accelerator.options[0])
    workers = planned.get("workers") or spec.resources.workers.max
    precision = hardware.resolve_precision(spec.precision, hardware.parse_accelerator(accelerator))
    hint, limit = spec.hints.runtime, spec.schedule.time_limit
    return Target(spec.name, accelerator, workers, precision, data_parallel=spec.sweep is None,
                  hint_s=hint.seconds if hint else None, limit_s=limit.seconds if limit else None)


def past_run(spec: JobSpec, planned: dict[str, Any], runtime_s: float) -> PastRun:
    """A finished job, run with ``planned``, as the history of its name."""
    ran = target_of(spec, planned)
    return PastRun(ran.name, ran.accelerator, ran.workers, runtime_s, ran.precision)


def estimate_json(spec: JobSpec, planned: dict[str, Any] | None, runs: Iterable[PastRun]) -> dict[str, Any]:
    """The ``estimate`` member of plan, status and list JSON for ``spec`` with ``planned`` (None:
    not planned yet) given the past ``runs`` (oldest first)."""
    return to_json(estimate(target_of(spec, planned), runs))


def estimate(job: Target, runs: Iterable[PastRun]) -> Estimate | None:
    """The job's running time and its basis; None when nothing says. ``runs``: oldest first."""
    mine = [run for run in runs if run.name == job.name]
    return (_own_history(job, mine) or _scaled_history(job, mine)
            or (Estimate(job.hint_s, "hint") if job.hint_s else None)
            or (Estimate(job.limit_s, "time limit (upper bound)") if job.limit_s else None))


def by_type(spec: JobSpec, runs: Iterable[PastRun], gpu_types: Iterable[str] = ()) -> dict[str, float] | None:
    """The job's running time on each type it leaves orch to choose among (an ``any_of``'s GPU
    types; for ``GPU:N``, ``gpu_types``: those of the cluster), from its history, own or scaled by
    throughput: what hardware by expected finish weighs (core/policy/finish.py). None when the job
    names one type, has an option that is no GPU type, or its history says nothing of one of the
    types: a hint or a limit is the same on every type, so today's rule stands."""
    choice = spec.resources.accelerator
    if choice.ordered and len(choice.options) > 1:
        return None
    options = [(name, option.count) for option in choice.options for name in _gpu_types(option, gpu_types)]
    if len(options) < 2 or any(option.kind != "gpu" for option in choice.options):
        return None
    mine = [run for run in runs if run.name == spec.name]
    found: dict[str, float] = {}
    for name, count in options:
        target = target_of(spec, {"accelerator": f"{name}:{count}"})
        known = _own_history(target, mine) or _scaled_history(target, mine)
        if known is None:
            return None
        found[name] = known.runtime_s
    return found


def _gpu_types(option: hardware.AcceleratorRequest, gpu_types: Iterable[str]) -> list[str]:
    if option.kind != "gpu":
        return []
    return [option.type.name] if option.type else list(gpu_types)


def _own_history(job: Target, runs: list[PastRun]) -> Estimate | None:
    same = [run for run in runs if _config(run) == _config(job)]
    if not same:
        return None
    recent = same[-LAST_RUNS:]
    return Estimate(median([run.runtime_s for run in recent]), _basis(recent, scaled=False))


def _scaled_history(job: Target, runs: list[PastRun]) -> Estimate | None:
    """The runs of the configuration the job ran on most recently, among those a speed ratio
    to the target's is known for, each scaled to the target."""
    target = _throughput(job.accelerator, job.precision, job.workers, job.data_parallel)
    usable = [run for run in runs if _ratio(run, job, target) is not None]
    if not usable:
        return None
    latest = _config(usable[-1])
    recent = [run for run in usable if _config(run) == latest][-LAST_RUNS:]
    scaled = [run.runtime_s * _ratio(run, job, target) for run in recent]
    return Estimate(median(scaled), _basis(recent, scaled=True))


def _ratio(run: PastRun, job: Target, target: tuple[str, float] | None) -> float | None:
    """How much longer the job runs than ``run`` did (its throughput over the job's); None when
    the two cannot be compared (a generic GPU:1 or auto; a CPU run against an accelerator; a type
    of unknown peak)."""
    past = _throughput(run.accelerator, run.precision, run.workers, job.data_parallel)
    if past is None or target is None or past[0] != target[0]:
        return None
    return past[1] / target[1]


@functools.lru_cache(maxsize=256)
def _throughput(accelerator: str, precision: str, workers: int, data_parallel: bool) -> tuple[str, float] | None:
    """(what the figure is measured in, relative speed of a configuration): catalog accelerators
    in peak TFLOP/s for the precision; CPU runs only against CPU runs, by workers."""
    try:
        request = hardware.parse_accelerator(accelerator)
    except hardware.AcceleratorError:
        return None
    scale = workers if data_parallel else 1
    if request.kind == "cpu":
        return "cpu", float(scale)
    device = request.slice.accelerator if request.slice else request.type
    if device is None:  # GPU:N or auto: no one type's speed
        return None
    peak = device.peak_fp32_tflops if precision == "fp32" else device.peak_bf16_tflops
    if peak is None:  # a type whose peak is not public, or a custom one: no speed to scale by
        return None
    per_worker = request.slice.chips_per_host if request.slice else request.count
    return "tflops", peak * per_worker * scale


def _config(item: PastRun | Target) -> tuple[str, int]:
    return _canonical(item.accelerator), item.workers


@functools.lru_cache(maxsize=256)  # a job's history repeats a few strings many times
def _canonical(accelerator: str) -> str:
    """``a100:1`` and ``A100:1`` name the same configuration."""
    try:
        return str(hardware.parse_accelerator(accelerator))
    except hardware.AcceleratorError:
        return accelerator


def _basis(runs: list[PastRun], scaled: bool) -> str:
    accelerator, workers = _config(runs[0])
    count = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
    return f"history: {count} on {accelerator} x{workers}{', scaled' if scaled else ''}"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
