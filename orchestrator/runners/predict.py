"""The predict runner: batch inference with Ray Data from a checkpoint to an output file.

A `predict:` job's entrypoint names a callable class, ``Predictor(checkpoint_dir,
config)``, whose instances map a batch (a dict of numpy arrays, the input
file's arrays row by row) to a batch with the predictions added. Ray Data runs
as many instances as the plan has workers, each holding the resources the
allocator chose for one worker (its GPU type included), so the model runs on
the chosen device. Rows keep their input order.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data
from ray.data.extensions import ArrowTensorArray

from orchestrator import loop
from orchestrator.core import hardware
from orchestrator.core.spec import JobSpec
from orchestrator.runners.train import TrainingFailed, load_entrypoint, save_summary

BATCH_ROWS = 256


def run(payload: dict[str, Any], code: Path) -> dict[str, Any]:
    spec = JobSpec.model_validate(payload["spec"])
    predictor, args = load_entrypoint(spec.entrypoint, code), (dict(spec.config),)
    if payload.get("secrets"):
        predictor, args = _WithEnv, (predictor, payload["secrets"], *args)
    checkpoint = loop.init_checkpoint()
    if checkpoint is None:
        raise TrainingFailed("predict.model did not resolve to a checkpoint")
    inputs = _read(spec.predict.input)
    rows = len(next(iter(inputs.values())))
    folder = Path(payload["storage"], payload["job"])
    output = folder / spec.predict.output
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    started = time.perf_counter()
    with checkpoint.as_directory() as model_dir:
        dataset = ray.data.from_arrow(_table(inputs)).map_batches(
            predictor, fn_constructor_args=(model_dir, *args), batch_size=BATCH_ROWS,
            batch_format="numpy", concurrency=payload["plan"]["workers"],
            **_actor_resources(payload["plan"]["per_worker"]))
        batches = list(dataset.iter_batches(batch_format="numpy", batch_size=None))
    seconds = time.perf_counter() - started
    columns = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]} if batches else {}
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **columns)
    summary = {"metrics": {"rows": rows, "rows_per_s": round(rows / seconds, 1), "seconds": round(seconds, 3)},
               "checkpoint": checkpoint.path, "best_checkpoints": [], "path": str(folder), "output": str(output)}
    save_summary(summary)
    return summary


class _WithEnv:
    """A predictor that sets the job's secret env values in its worker before it is built.
    They travel in the pickled constructor arguments, not in a runtime env that Ray's APIs
    would show (as ``runners.train._WithEnv`` does for loops)."""

    def __init__(self, model_dir: str, predictor: type, env: dict[str, str], config: dict):
        os.environ.update(env)
        self.inner = predictor(model_dir, config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner(batch)


def _read(path: str) -> dict[str, np.ndarray]:
    """The input file's arrays (``.npz``; ``.npy`` as one column ``x``), all with the same row count."""
    if path.endswith(".npy"):
        return {"x": np.load(path)}
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    if not arrays or len({len(a) for a in arrays.values()}) != 1:
        raise TrainingFailed(f"predict.input {path}: needs arrays with the same number of rows")
    return arrays


def _table(arrays: dict[str, np.ndarray]):
    import pyarrow as pa

    return pa.table({key: ArrowTensorArray.from_numpy(a) if a.ndim > 1 else a for key, a in arrays.items()})


def _actor_resources(per_worker: dict[str, float]) -> dict[str, Any]:
    """One plan worker's resources as Ray Data actor options."""
    custom = {k: v for k, v in per_worker.items() if k not in (hardware.CPU, hardware.GPU, hardware.MEMORY)}
    options: dict[str, Any] = {"num_cpus": per_worker.get(hardware.CPU, 1), "num_gpus": per_worker.get(hardware.GPU, 0)}
    if per_worker.get(hardware.MEMORY):
        options["memory"] = per_worker[hardware.MEMORY]
    if custom:
        options["resources"] = custom
    return options
