"""Helpers for training-loop authors: what orch decided for this run.

A loop stays a plain Ray Train loop; these only read the choices orch made
(precision, the checkpoint to start from) from the worker's environment.

Starting weights (``init_from``) come through Ray Train's checkpoint API::

    checkpoint, resumed = orchestrator.loop.starting_checkpoint()
    if resumed:      # this run's own last checkpoint: load everything, continue its epochs
        ...
    elif checkpoint: # init_from: load the weights you want to keep, start at epoch 0
        ...
"""

from __future__ import annotations

import contextlib
import os

from orchestrator.core.protocol import INIT_FROM_ENV, PRECISION_ENV


def precision() -> str:
    """The run's resolved precision: fp32, bf16 or fp16 (never auto)."""
    return os.environ.get(PRECISION_ENV, "fp32")


def autocast(device):
    """A torch autocast context for the run's precision (a no-op for fp32)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision())
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device):
    """A torch GradScaler, on for fp16 (whose small range needs loss scaling), a pass-through
    otherwise: ``scaler.scale(loss).backward(); scaler.step(opt); scaler.update()``."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=precision() == "fp16")


def keras_policy() -> str:
    """Set Keras' global mixed-precision policy for the run's precision; call it before
    building the model (keep the output layer ``dtype="float32"``). Returns the policy name."""
    import tensorflow as tf

    name = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}.get(precision(), "float32")
    tf.keras.mixed_precision.set_global_policy(name)
    return name


def starting_checkpoint():
    """(checkpoint, resumed): the run's own last checkpoint (resumed is True) when it has
    one (a restart, a preemption), else ``init_from``'s checkpoint, else (None, False)."""
    import ray.train

    own = ray.train.get_checkpoint()
    if own is not None:
        return own, True
    return init_checkpoint(), False


def init_checkpoint():
    """``init_from``'s checkpoint (relative paths are read from the job's working_dir), or None."""
    source = os.environ.get(INIT_FROM_ENV)
    if not source:
        return None
    import ray.train

    return ray.train.Checkpoint(source if "://" in source else os.path.abspath(source))


def device():
    """The torch device this worker should use: its GPU when Ray gave it one and CUDA is
    real (simulated GPUs are not), else the CPU."""
    import ray
    import torch

    if torch.cuda.is_available() and ray.get_gpu_ids():
        return torch.device("cuda", 0)  # Ray sets CUDA_VISIBLE_DEVICES to the worker's GPUs
    return torch.device("cpu")
