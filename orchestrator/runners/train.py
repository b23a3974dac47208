"""The training runner: a Ray Train trainer built from the spec and the plan."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import ray.exceptions
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback

from orchestrator import loop as orch_loop
from orchestrator.core import precision
from orchestrator.core.protocol import PRECISION_ENV
from orchestrator.core.spec import JobSpec
from orchestrator.load import loopcode
from orchestrator.runners import frameworks
from orchestrator.runners.emit import emit
from orchestrator.runners.event_files import EventFiles

RESULT_FILE = "orch_result.json"


class TrainingFailed(Exception):
    """The trainer gave up (worker-group failures beyond max_failures, or a bad loop)."""


class InfrastructureLost(Exception):
    """A Ray process the run needs died under it (its Train controller): a restart may succeed."""


class ProgressCallback(UserCallback):
    """Runs in the Train controller: turns each report and failure into an event line."""

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        emit("report", metrics=metrics[0] if metrics else {},
                    checkpoint=checkpoint.path if checkpoint else None)

    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
        causes = {str(rank): f"{type(e).__name__}: {e}"[:500] for rank, e in worker_exceptions.items()}
        emit("worker_failure", causes=causes)


def run(payload: dict[str, Any], code: Path) -> dict[str, Any]:
    spec = JobSpec.model_validate(payload["spec"])
    loop = worker_loop(spec, payload, code)
    announce_event_files(os.path.join(payload["storage"], payload["job"]))
    trainer = frameworks.build_trainer(
        spec.framework, loop, dict(spec.config), scaling_config(payload["scaling"]),
        run_config(spec, payload["job"], payload["storage"]),
    )
    try:
        result = trainer.fit()
    except ray.exceptions.RayActorError as error:  # Train's controller process died: not the loop's doing
        raise InfrastructureLost(f"{type(error).__name__}: {str(error).splitlines()[0]}") from error
    except Exception as error:  # Ray Train raises TrainingFailedError subclasses, loops anything
        raise TrainingFailed(f"{type(error).__name__}: {error}") from error
    summary = {
        "metrics": result.metrics,
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "best_checkpoints": [{"path": c.path, "metrics": m} for c, m in result.best_checkpoints or []],
        "path": result.path,
    }
    save_summary(summary)
    return summary


def save_summary(summary: dict[str, Any]) -> None:
    """Keep a run's summary in its folder, beside its checkpoints."""
    Path(summary["path"]).mkdir(parents=True, exist_ok=True)
    (Path(summary["path"]) / RESULT_FILE).write_text(json.dumps(summary, default=str))


def announce_event_files(logdir: str) -> None:
    """Say where this job's TensorBoard event files go (`orch tensorboard` reads it from the log):
    a Train run's folder, or the folder of a sweep's Train runs (one TensorBoard run per trial)."""
    emit("tensorboard", logdir=logdir)


def scaling_config(kwargs: dict[str, Any]) -> ScalingConfig:
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("num_workers"), list):  # JSON turned the (min, max) tuple into a list
        kwargs["num_workers"] = tuple(kwargs["num_workers"])
    return ScalingConfig(**kwargs)


def run_config(spec: JobSpec, job_id: str, storage: str, progress: UserCallback | None = None) -> RunConfig:
    """The Train run's settings; ``progress`` turns its reports into events (default: ProgressCallback)."""
    policy = spec.checkpoint
    return RunConfig(
        name=job_id,
        storage_path=storage,
        failure_config=FailureConfig(max_failures=spec.failure.max_failures),
        checkpoint_config=CheckpointConfig(
            num_to_keep=policy.keep,
            checkpoint_score_attribute=policy.metric,
            checkpoint_score_order=policy.mode,
        ),
        callbacks=[progress or ProgressCallback(), EventFiles()],
    )


def worker_loop(spec: JobSpec, payload: dict[str, Any], code: Path) -> Callable:
    """The spec's loop (from the job's code in folder ``code``) as each worker runs it: with
    the job's secret env values set first, under the run's precision when orch applies it."""
    loop = load_entrypoint(spec.entrypoint, code)
    resolved = os.environ.get(PRECISION_ENV, "fp32")
    by = precision.applied_by(spec.framework, resolved, loopcode.entry_helpers(spec.entrypoint, code) or frozenset())
    emit("precision", precision=resolved, applied_by=by.value)
    if by is precision.AppliedBy.ORCH:
        loop = _WithPrecision(loop, spec.framework)
    return _WithEnv(loop, payload["secrets"]) if payload.get("secrets") else loop


class _WithPrecision:
    """A loop run under the run's precision (bf16) without its own code saying so: the Keras
    policy set before it builds its model, or all of it under torch autocast on the worker's
    device (CPU autocast on CPU workers). orch's own helpers decide both."""

    def __init__(self, loop: Callable, framework: str):
        self.loop, self.framework = loop, framework

    def __call__(self, config):
        if self.framework == "tensorflow":
            orch_loop.keras_policy()
            return self.loop(config)
        with orch_loop.autocast(orch_loop.device()):
            return self.loop(config)


class _WithEnv:
    """A loop that sets env values in its worker before it runs. They travel inside the
    pickled loop, not in a runtime env that Ray's APIs would show."""

    def __init__(self, loop: Callable, env: dict[str, str]):
        self.loop, self.env = loop, env

    def __call__(self, config):
        os.environ.update(self.env)
        return self.loop(config)


def load_entrypoint(entrypoint: str, root: Path) -> Callable:
    """Resolve ``FILE.py:FUNC`` or ``package.module:FUNC`` against the job's working_dir."""
    target, func_name = entrypoint.rsplit(":", 1)
    sys.path.insert(0, str(root))
    if target.endswith(".py"):
        path = (root / target).resolve()
        sys.path.insert(0, str(path.parent))
        module_name = f"orch_entry_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
        # Workers cannot import a module loaded from a path: ship its code by value.
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(module)
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, func_name)
    except AttributeError:
        raise TrainingFailed(f"{target} has no function {func_name!r}") from None
