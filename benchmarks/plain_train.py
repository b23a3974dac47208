"""The plain-Ray baseline: the digits MLP loop run by a hand-written TorchTrainer.

Submitted by benchmarks/overhead.py with `ray job submit --wait`, with the
example's folder as working_dir; the same loop and settings as
jobs/digits/torch-mlp.yaml.
"""

import os
import sys
import tempfile

import yaml
from ray.train import CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

sys.path.insert(0, os.getcwd())
from train_torch import train_loop  # noqa: E402  (the example's own loop)

spec = yaml.safe_load(open("torch-mlp.yaml"))
trainer = TorchTrainer(
    train_loop,
    train_loop_config=spec["config"],
    torch_config=TorchConfig(backend="gloo"),
    scaling_config=ScalingConfig(num_workers=spec["resources"]["workers"],
                                 resources_per_worker={"CPU": 1, "memory": 1024**3}),
    run_config=RunConfig(storage_path=tempfile.mkdtemp(prefix="plain-"),
                         checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="test_accuracy",
                                                            checkpoint_score_order="max")),
)
result = trainer.fit()
print("test_accuracy", result.metrics["test_accuracy"])
