"""The job spec (SPEC.md section 1) as strict pydantic models.

Every default of the job spec lives here and nowhere else. Models forbid
unknown fields and coerce nothing: a string where a number belongs is an
error, not a guess. The few string forms the spec allows (``2GiB``,
``"2..8"``, ``A100:1``, ``350M``, ``45m``) are parsed once, in ``forms.py``, into typed values.
Loading YAML with positions and turning errors into ``SpecError`` lives in
``load/spec.py``.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from orchestrator.core.forms import Accelerators, AcceleratorChoice, Bytes, Count, TimeSpan, WorkerRange, Workers
from orchestrator.core.hardware import AcceleratorRequest
from orchestrator.core.spec_words import (ENTRYPOINT_PATTERN, ENV_NAME_PATTERN, JOB_SOURCE, NAME_PATTERN,
                                          PRECISION_DEFAULT, SUBMITTER_ENV_PATTERN)



class Strict(BaseModel):
    """Base of every spec model: unknown keys and silent coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


# ---- paths -----------------------------------------------------------------
#
# Each path field has a root it must not escape (SPEC.md section 1 and
# docs/spec.md "Paths"): an entrypoint file lies inside working_dir; relative
# checkpoint and input paths are read from working_dir; predict.output is
# written under the job's output folder. These checks need no files; those
# that follow symlinks run in load/files.py, where the files are.

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain_text(value: str) -> str:
    """Refuse empty values and control characters (a NUL byte, a newline, an escape sequence)."""
    if not value.strip():
        raise ValueError("must not be empty")
    bad = _CONTROL.search(value)
    if bad:
        raise ValueError(f"{value!r} contains the control character {bad.group()!r}; write a plain path")
    return value


def _inside(value: str, root: str, example: str) -> PurePosixPath:
    """``value`` as a relative path that stays inside ``root``: no leading '/', '~' or any '..'."""
    path = PurePosixPath(value)
    if value.startswith("~"):
        raise ValueError(f"{value!r}: '~' is not expanded here; write a path inside {root}, such as {example}")
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r} must be a path inside {root}, without '..' or a leading '/', such as {example}")
    return path


def check_entrypoint(value: str) -> str:
    """A ``FILE.py:FUNC`` entrypoint names a file inside working_dir."""
    file, _, func = value.rpartition(":")
    if file.endswith(".py"):
        try:
            _inside(file, "working_dir", f"train.py:{func}")
        except ValueError as error:
            raise ValueError(f"{error}; move the file into working_dir or set working_dir to its folder") from None
    return value


def check_working_dir(value: str) -> str:
    """Any folder, relative to the spec's folder or absolute; never the filesystem root."""
    _plain_text(value)
    if value.startswith("~"):
        raise ValueError(f"{value!r}: '~' is not expanded here; write the folder's absolute path "
                         "or a path relative to the spec's folder")
    if value.startswith("/") and posixpath.normpath(value) in ("/", "//"):
        raise ValueError(f"{value!r} would ship the whole filesystem to the cluster; "
                         "point working_dir at the job's own folder")
    return value




def check_source(value: str) -> str:
    """A checkpoint or input to read: ``job:NAME``, a URI (``s3://...``), an absolute path,
    or a path relative to working_dir without '..'."""
    _plain_text(value)
    if value.startswith(JOB_SOURCE):
        if not re.fullmatch(NAME_PATTERN, value[4:]):
            raise ValueError(f"{value!r}: after 'job:' write the name or id of an earlier job "
                             "(lowercase letters, digits and '-'), such as job:digits-mlp")
        return value
    if _URI.match(value) or PurePosixPath(value).is_absolute():
        return value
    _inside(value, "working_dir", "checkpoints/best, or write an absolute path or job:NAME")
    return value


def check_input(value: str) -> str:
    """predict.input: a URI, an absolute path, or a path relative to working_dir without '..'."""
    _plain_text(value)
    if _URI.match(value) or PurePosixPath(value).is_absolute():
        return value
    _inside(value, "working_dir", "data/test.npz, or write an absolute path")
    return value


def check_output(value: str) -> str:
    """predict.output: a file under the job's output folder, never outside it."""
    _plain_text(value)
    if _URI.match(value):
        raise ValueError(f"{value!r}: write a path relative to the job's output folder, "
                         "such as out/predictions.npz (URIs are not supported here)")
    path = _inside(value, "the job's output folder", "out/predictions.npz")
    if not path.name or path.name == ".":
        raise ValueError(f"{value!r} must name a file, such as out/predictions.npz")
    return value


def check_requirements_file(value: str) -> str:
    """``pip: FILE``: a requirements file inside working_dir (load/requirements.py reads it)."""
    _plain_text(value)
    _inside(value, "working_dir", "requirements.txt")
    return value


def check_pip_line(value: str) -> str:
    """One ``pip:`` entry is one line of a requirements file; its syntax is checked in load/."""
    _plain_text(value)
    return value.strip()


def check_exclude(value: str) -> str:
    """An ``excludes:`` pattern matches paths inside working_dir, as a .gitignore line at its top."""
    _plain_text(value)
    if ".." in PurePosixPath(value.lstrip("!")).parts:
        raise ValueError(f"{value!r}: patterns match paths inside working_dir; '..' matches nothing there")
    return value


EntrypointStr = Annotated[str, Field(pattern=ENTRYPOINT_PATTERN), AfterValidator(check_entrypoint)]
WorkingDir = Annotated[str, AfterValidator(check_working_dir)]
SourcePath = Annotated[str, AfterValidator(check_source)]
InputPath = Annotated[str, AfterValidator(check_input)]
OutputPath = Annotated[str, AfterValidator(check_output)]
RequirementsFile = Annotated[str, AfterValidator(check_requirements_file)]
PipLine = Annotated[str, AfterValidator(check_pip_line)]
ExcludePattern = Annotated[str, AfterValidator(check_exclude)]


def _pip_kind(value: Any) -> str | None:
    return "list" if isinstance(value, (list, tuple)) else "file" if isinstance(value, str) else None


PIP_ERROR = "pip"  # the error type of a pip value that is neither a list nor a file name
Pip = Annotated[
    Union[Annotated[list[PipLine], Tag("list")], Annotated[RequirementsFile, Tag("file")]],
    Discriminator(_pip_kind, custom_error_type=PIP_ERROR,
                  custom_error_message="must be a list of requirements, such as [einops==0.8.0], "
                                       "or a requirements file inside working_dir, such as requirements.txt")]


# ---- env and secrets -----------------------------------------------------------


class EnvFrom(Strict):
    """A value read from the submitter's environment when the job is submitted, e.g.
    {from_env: WANDB_API_KEY, secret: true}; secret values are shown as *** everywhere."""

    # The spec (and all that stores it) holds only the variable's name; the value is read
    # by orchestrator.core.masking.resolve_env at submit time and goes to the workers' env only.

    from_env: Annotated[str, Field(pattern=SUBMITTER_ENV_PATTERN)]
    secret: bool = False


def _env_kind(value: Any) -> str:
    return "EnvFrom" if isinstance(value, (dict, EnvFrom)) else "str"


EnvValue = Annotated[
    Union[Annotated[str, Tag("str")], Annotated[EnvFrom, Tag("EnvFrom")]],
    Discriminator(_env_kind),
]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]


# ---- sections ------------------------------------------------------------


class Resources(Strict):
    workers: Workers = WorkerRange(min=1, max=1)
    cpus: PositiveFloat = 1.0
    memory: Bytes = 2 * 1024**3
    accelerator: Accelerators = AcceleratorChoice(options=(AcceleratorRequest("cpu"),))
    accelerator_memory: Bytes | None = None
    placement: Literal["pack", "spread", "strict_pack", "strict_spread"] = "pack"


class Hints(Strict):
    params: Count | None = None
    runtime: TimeSpan | None = None  # the user's estimate: first accelerator option, the spec's workers


class Schedule(Strict):
    priority: int = Field(100, ge=0, le=1000)
    preemptible: bool = False
    queue: Annotated[str, Field(pattern=NAME_PATTERN)] = "default"
    time_limit: TimeSpan | None = None  # running time over all attempts; the control plane enforces it


class Failure(Strict):
    max_failures: int = Field(2, ge=-1)


class CheckpointPolicy(Strict):
    keep: int = Field(2, ge=1)
    metric: str | None = None
    mode: Literal["min", "max"] = "min"


def _pair(kind: str):
    return Annotated[list[float], Field(min_length=2, max_length=2, description=f"[low, high] for {kind}")]


class _Range(Strict):
    """A distribution over [low, high]: low must be below high."""

    @model_validator(mode="after")
    def _ordered(self) -> "_Range":
        low, high = getattr(self, next(iter(type(self).model_fields)))
        if low >= high:
            raise ValueError(f"low {low!r} must be below high {high!r}")
        return self


class Uniform(_Range):
    uniform: _pair("uniform")


class LogUniform(_Range):
    loguniform: _pair("loguniform")

    @model_validator(mode="after")
    def _positive(self) -> "LogUniform":
        if self.loguniform[0] <= 0:
            raise ValueError("loguniform bounds must be positive")
        return self


class RandInt(_Range):
    randint: Annotated[list[int], Field(min_length=2, max_length=2)]


class Choice(Strict):
    choice: Annotated[list[Any], Field(min_length=1)]


class Grid(Strict):
    grid: Annotated[list[Any], Field(min_length=1)]


def _distribution_kind(value: Any) -> str | None:
    """The distribution a space entry names ({uniform: [...]} is "uniform"): only that one is
    validated, so its own message (say, low above high) is the one shown."""
    if isinstance(value, dict):
        return next(iter(value)) if len(value) == 1 else None
    return next(iter(type(value).model_fields), None) if isinstance(value, BaseModel) else None


_DISTRIBUTIONS = {"uniform": Uniform, "loguniform": LogUniform, "randint": RandInt, "choice": Choice, "grid": Grid}
DISTRIBUTION_KINDS = tuple(_DISTRIBUTIONS)
DISTRIBUTION_ERROR = "distribution"  # the error type of a space entry that names no distribution
Distribution = Annotated[
    Union[tuple(Annotated[model, Tag(kind)] for kind, model in _DISTRIBUTIONS.items())],
    Discriminator(_distribution_kind, custom_error_type=DISTRIBUTION_ERROR,
                  custom_error_message="must be one mapping of {uniform: [low, high]}, {loguniform: [low, high]}, "
                                       "{randint: [low, high]}, {choice: [...]} or {grid: [...]}")]


class Sweep(Strict):
    metric: str
    mode: Literal["min", "max"]
    samples: int = Field(16, ge=1)
    max_concurrent: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    search: Literal["random", "grid", "optuna", "hyperopt"] = "random"
    scheduler: Literal["fifo", "asha", "pbt"] = "asha"
    space: Annotated[dict[str, Distribution], Field(min_length=1)]

    def enumerated(self, dist: Distribution) -> list[Any] | None:
        """The values Tune runs every one of (``grid_search``) for ``dist``: ``grid`` entries under
        random or grid search, ``choice`` entries under grid search; None for a sampled entry
        (Optuna and HyperOpt pick among the values: they cannot enumerate)."""
        if isinstance(dist, Grid) and self.search in ("random", "grid"):
            return dist.grid
        if isinstance(dist, Choice) and self.search == "grid":
            return dist.choice
        return None

    @property
    def trials(self) -> int:
        """How many trials the sweep runs: ``samples`` times each combination of enumerated values."""
        count = self.samples
        for dist in self.space.values():
            count *= len(self.enumerated(dist) or [None])
        return count


class Predict(Strict):
    model: SourcePath
    input: InputPath
    output: OutputPath


def space_keys_problem(space: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """What is wrong with ``sweep.space``'s keys, or None: each must be a key of ``config``
    (a trial's config is ``config`` with the space's picks)."""
    unknown = [key for key in space if key not in config]
    if not unknown:
        return None
    return (f"{', '.join(map(repr, unknown))} not in config (keys: {', '.join(config) or 'none'}); "
            "add a default value to config")


class JobSpec(Strict):
    """One job: what to run, on what hardware, with which policy."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    framework: Literal["torch", "tensorflow", "jax"] = "torch"
    entrypoint: EntrypointStr
    working_dir: WorkingDir = "."
    config: dict[str, Any] = Field(default_factory=dict)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    resources: Resources = Resources()
    precision: Literal["auto", "fp32", "bf16", "fp16"] = PRECISION_DEFAULT
    init_from: SourcePath | None = None
    pip: Pip = Field(default_factory=list)  # Ray runtime_env pip
    excludes: list[ExcludePattern] = Field(default_factory=list)  # left out of the working_dir package
    hints: Hints = Hints()
    schedule: Schedule = Schedule()
    failure: Failure = Failure()
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    sweep: Sweep | None = None
    predict: Predict | None = None

    @model_validator(mode="after")
    def _cross_field(self) -> "JobSpec":
        problem = self.sweep and space_keys_problem(self.sweep.space, self.config)
        if problem:
            raise ValueError(f"sweep.space: {problem}")
        if self.sweep and self.predict:
            raise ValueError("sweep and predict cannot both be present: a job trains, sweeps or predicts")
        _reject_non_finite(self.config, "config")
        return self


def _reject_non_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: {value!r} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_non_finite(item, f"{path}.{key}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _reject_non_finite(item, f"{path}[{index}]")


def json_schema() -> dict[str, Any]:
    """JSON Schema of the job spec, for editors (``orch schema``)."""
    schema = JobSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "orch job spec"
    return schema
