"""The plain-Ray baseline for benchmarks/sweep_overhead.py: the digits sweep as a hand-written Tuner.

Submitted with `ray job submit --wait`, with the example's folder as
working_dir: the same loop, search space, searcher, trial count and
per-trial resources as jobs/digits/torch-sweep.yaml, written the way the Ray
docs write Train inside Tune. The scheduler may be overridden by argv[1].
"""

import os
import sys
import tempfile

import ray
import yaml
from ray import tune
from ray.train import CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

sys.path.insert(0, os.getcwd())
from train_torch import train_loop  # noqa: E402  (the example's own loop)

spec = yaml.safe_load(open("torch-sweep.yaml"))
sweep, space = spec["sweep"], spec["sweep"]["space"]
scheduler = sys.argv[1] if len(sys.argv) > 1 else sweep["scheduler"]
storage = tempfile.mkdtemp(prefix="plain-sweep-")


def trial(config):
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**spec["config"], **config},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1, "memory": 1024**3}),
        run_config=RunConfig(name=tune.get_context().get_trial_id(), storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="test_accuracy",
                                                                checkpoint_score_order="max"),
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


ray.init()
tuner = tune.Tuner(
    tune.with_resources(trial, {"orch_driver": 1}),  # a trial driver must not take its workers' CPU
    param_space={"lr": tune.loguniform(*space["lr"]["loguniform"]), "hidden": tune.randint(*space["hidden"]["randint"]),
                 "dropout": tune.uniform(*space["dropout"]["uniform"])},
    tune_config=tune.TuneConfig(metric=sweep["metric"], mode=sweep["mode"], num_samples=sweep["samples"],
                                max_concurrent_trials=min(sweep["samples"], int(ray.cluster_resources()["CPU"])),
                                search_alg=OptunaSearch(),
                                scheduler=ASHAScheduler(time_attr="training_iteration") if scheduler == "asha" else None),
    run_config=tune.RunConfig(storage_path=storage, verbose=0),
)
print("test_accuracy", tuner.fit().get_best_result().metrics["test_accuracy"])
