"""Framework specifics: which Ray Train trainer, and what its workers need.

Environment facts for workers are plain data (``protocol.worker_env``) so the
submitting side can put them in the job's runtime env without importing any
framework; trainers are imported only inside the driver.
"""

from __future__ import annotations

from typing import Any, Callable

def build_trainer(framework: str, loop: Callable, config: dict[str, Any], scaling, run_config):
    """The Ray Train trainer for ``framework`` running ``loop`` with ``config``."""
    common = dict(train_loop_per_worker=loop, train_loop_config=config,
                  scaling_config=scaling, run_config=run_config)
    if framework == "torch":
        from ray.train.torch import TorchConfig, TorchTrainer

        return TorchTrainer(torch_config=TorchConfig(backend=_torch_backend(scaling)), **common)
    if framework == "tensorflow":
        from ray.train.tensorflow import TensorflowTrainer

        return TensorflowTrainer(**common)
    if framework == "jax":
        from ray.train.v2.jax import JaxTrainer

        return JaxTrainer(**common)
    raise ValueError(f"unknown framework {framework!r}")


def _torch_backend(scaling) -> str:
    # NCCL needs real CUDA devices; simulated GPUs (and CPU workers) use gloo.
    import torch

    return "nccl" if scaling.use_gpu and torch.cuda.is_available() else "gloo"
