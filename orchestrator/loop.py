"""Helpers for training-loop authors: what orch decided for this run.

A loop stays a plain Ray Train loop; these only read the choices orch made
(precision) from the worker's environment.
"""

from __future__ import annotations

import contextlib
import os

PRECISION_ENV = "ORCH_PRECISION"


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
