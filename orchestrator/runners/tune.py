"""The sweep runner: a Ray Tune search whose trials each run the training runner's trainer.

Every trial builds the same Ray Train trainer as ``runners/train.py``, with the
trial's sampled values merged over ``config``. Choices made here (SPEC.md is
silent on them):
- ``grid`` entries are enumerated (every value, ``samples`` times, as Tune's
  ``grid_search``); with ``search: grid`` ``choice`` entries are enumerated
  too. Optuna and HyperOpt cannot enumerate: they pick among the values.
- ``pbt`` perturbs the ``uniform``/``loguniform`` entries; the others stay
  what the trial (or the trial it cloned) started with, so weights keep fitting.
- ``max_concurrent: auto`` runs as many trials as the queue gave the sweep
  slots when it admitted it: those that fit the free resources then, within
  its queue's own quota (``orchestrator.core.policy.decide``). Each slot has its
  own placement, so with a fallback list trials run on several accelerator
  types at once, and each trial records the type it ran on.
- A trial's Train run lives under ``<storage>/<job>/train/``; a restarted
  driver resumes the sweep (``Tuner.restore``): finished trials stay
  finished, unfinished ones continue from their last checkpoint.

Train's reports reach Tune through a queue and ``tune.report`` in the trial,
not through ``TuneReportCallback``, which gives Tune metrics but no
checkpoint: each report here carries a tiny Tune checkpoint naming the
trial's Train run, which PBT hands from trial to trial and a restored sweep
resumes from.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
from ray.tune.result import AUTO_RESULT_KEYS
from ray.util.queue import Queue

from orchestrator.core.protocol import DRIVER_RESOURCE
from orchestrator.runners import frameworks
from orchestrator.runners.emit import emit
from orchestrator.runners.train import (
    ProgressCallback,
    TrainingFailed,
    announce_event_files,
    run_config,
    save_summary,
    scaling_config,
    worker_loop,
)
from orchestrator.core.spec import Grid, JobSpec, LogUniform, RandInt, Sweep, Uniform

# A trial's driver holds one of these instead of a CPU: a driver taking CPU its
# own workers need deadlocks Train inside Tune, and Ray refuses {"CPU": 0}.
DRIVER_SLOT = {DRIVER_RESOURCE: 1}
# PBT compares trials every this many reports (epochs, for loops that report each epoch).
PBT_INTERVAL = 2
POINTER_FILE = "orch_train_run.json"
SLOT_POLL_S = 0.5
ACCELERATOR_KEY = "accelerator"
_NOT_METRICS = set(AUTO_RESULT_KEYS) | {"trial_id", "experiment_tag", "done", "date", "should_checkpoint"}
_SEARCHERS = {"optuna": ("optuna", "ray.tune.search.optuna", "OptunaSearch"),
              "hyperopt": ("hyperopt", "ray.tune.search.hyperopt", "HyperOptSearch")}


def run(payload: dict[str, Any], code: Path) -> dict[str, Any]:
    spec = JobSpec.model_validate(payload["spec"])
    job, storage = payload["job"], payload["storage"]
    if not ray.is_initialized():
        ray.init(address="auto")  # the Ray Job's own cluster
    # Save the experiment's state at every step, not every ~10 s: a driver killed just
    # after a trial finished must not find it unfinished on restore and run it again.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    slots = _trial_slots(payload)
    announce_event_files(_train_runs(storage, job))
    # Held here for the sweep's lifetime: Ray ends an actor once no handle to it is left.
    slot_keeper = _Slots.options(name=_slots_name(job), num_cpus=0, get_if_exists=True).remote(slots)
    trainable = tune.with_resources(_trial_function(spec, payload, code), DRIVER_SLOT)
    path = os.path.join(storage, job)
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable)
    else:
        _require_driver_resource()
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(spec.sweep),
            tune_config=tune.TuneConfig(
                metric=spec.sweep.metric, mode=spec.sweep.mode, num_samples=spec.sweep.samples,
                max_concurrent_trials=len(slots), search_alg=_searcher(spec.sweep.search),
                scheduler=_scheduler(spec.sweep)),
            run_config=tune.RunConfig(name=job, storage_path=storage, verbose=0,
                                      callbacks=[_TrialEvents(job)]),
        )
    try:
        grid = tuner.fit()
    finally:
        ray.kill(slot_keeper)
    summary = _summary(grid, spec, path)
    save_summary(summary)
    return summary


# ---- the search ------------------------------------------------------------------


def search_space(sweep: Sweep) -> dict[str, Any]:
    """The spec's distributions as Tune search-space entries."""
    return {key: _domain(dist, sweep) for key, dist in sweep.space.items()}


def _domain(dist, sweep: Sweep):
    if isinstance(dist, Uniform):
        return tune.uniform(*dist.uniform)
    if isinstance(dist, LogUniform):
        return tune.loguniform(*dist.loguniform)
    if isinstance(dist, RandInt):
        return tune.randint(*dist.randint)  # high excluded, as in the spec's example [32, 257]
    values = sweep.enumerated(dist)
    if values is not None:
        return tune.grid_search(values)
    return tune.choice(dist.grid if isinstance(dist, Grid) else dist.choice)


def _searcher(search: str):
    if search not in _SEARCHERS:
        return None  # random and grid: Tune's own variant generator
    package, module, name = _SEARCHERS[search]
    if importlib.util.find_spec(package) is None:
        raise TrainingFailed(f"search: {search} needs the {package!r} package where the job runs; "
                             f"install orch with the tune extra (pip install 'orch[tune]')")
    return getattr(importlib.import_module(module), name)()


def _scheduler(sweep: Sweep):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if sweep.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration")
    if sweep.scheduler == "fifo":
        return None
    mutations = {key: _domain(dist, sweep) for key, dist in sweep.space.items()
                 if isinstance(dist, (Uniform, LogUniform))}
    if not mutations:
        raise TrainingFailed("scheduler: pbt perturbs continuous values; sweep.space has no uniform "
                             "or loguniform entry")
    return PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=PBT_INTERVAL,
                                   hyperparam_mutations=mutations)


def _require_driver_resource() -> None:
    if int(ray.cluster_resources().get(DRIVER_RESOURCE, 0)) < 1:
        raise TrainingFailed(f"sweeps need the custom resource {DRIVER_RESOURCE!r} on a node for "
                             f"trial drivers (`orch up` declares it on the head); this cluster has none")


def _trial_slots(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Where trials may run at once, each slot with its Ray Train settings: the plan the queue
    admitted the sweep with, and the further trial slots it counted for it (``Plan.trials``)."""
    plan = payload["plan"]
    return [{"accelerator": plan["accelerator"], "scaling": payload["scaling"]},
            *({"accelerator": t["accelerator"], "scaling": t["scaling"]} for t in plan.get("trials", ()))]


def _slots_name(job: str) -> str:
    return f"orch-trial-slots-{job}"


@ray.remote
class _Slots:
    """Hands each running trial a slot of its own; a slot whose trial no longer runs is free.

    The sweep's driver tells it which trials run (``sync``) each Tune step, so a
    trial stopped early or paused (ASHA, PBT) gives its slot up without having to
    say so: killed trials run no cleanup code.
    """

    def __init__(self, slots: list[dict[str, Any]]):
        self.slots, self.holders, self.running = slots, [None] * len(slots), set()

    def sync(self, running: list[str]) -> None:
        self.running = set(running)

    def acquire(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id in self.holders:
            return self.slots[self.holders.index(trial_id)]
        for index, holder in enumerate(self.holders):
            if holder is None or holder not in self.running:
                self.holders[index] = trial_id
                return self.slots[index]
        return None


# ---- one trial -------------------------------------------------------------------


def _trial_function(spec: JobSpec, payload: dict[str, Any], code: Path) -> Callable[[dict], None]:
    loop = worker_loop(spec, payload, code)
    job = payload["job"]
    runs = _train_runs(payload["storage"], job)

    def trial(sampled: dict) -> None:
        trial_id = tune.get_context().get_trial_id()
        slot = _acquire_slot(job, trial_id)
        scaling, accelerator = scaling_config(slot["scaling"]), slot["accelerator"]
        name = _train_run(trial_id, runs)
        reports = Queue(maxsize=1, actor_options={"num_cpus": 0})
        settings = run_config(spec, name, runs, progress=_ForwardReports(reports))
        trainer = frameworks.build_trainer(spec.framework, loop, {**spec.config, **sampled}, scaling, settings)
        threading.Thread(target=_fit, args=(trainer, reports), daemon=True).start()
        # tune.report works only in this thread, so Train's reports come here through the queue.
        while (item := reports.get())[0] == "report":
            _, metrics, checkpoint = item
            _report({**metrics, ACCELERATOR_KEY: accelerator}, checkpoint, {"run": name, "trial": trial_id})
        if item[0] == "failed":
            raise TrainingFailed(item[1])

    return trial


class _ForwardReports(ProgressCallback):
    """Runs in the Train controller: passes each report to the trial's thread (failures still become events)."""

    def __init__(self, reports: Queue):
        self._reports = reports

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        # Blocks until the trial took the previous report, so Tune's scheduler keeps up with training.
        self._reports.put(("report", metrics[0] if metrics else {}, checkpoint.path if checkpoint else None))


def _train_runs(storage: str, job: str) -> str:
    """The folder of the sweep's Train runs: each trial's checkpoints and TensorBoard event files."""
    return os.path.join(storage, job, "train")


def _acquire_slot(job: str, trial_id: str) -> dict[str, Any]:
    slots = ray.get_actor(_slots_name(job))
    while (slot := ray.get(slots.acquire.remote(trial_id))) is None:
        time.sleep(SLOT_POLL_S)  # the driver has not yet seen a finished trial leave its slot
    return slot


def _fit(trainer, reports: Queue) -> None:
    try:
        trainer.fit()
    except Exception as error:  # Ray Train raises TrainingFailedError subclasses, loops anything
        reports.put(("failed", f"{type(error).__name__}: {error}"))
    else:
        reports.put(("done",))


def _report(metrics: dict[str, Any], checkpoint: str | None, pointer: dict[str, str]) -> None:
    """Report to Tune; with a Tune checkpoint naming the Train run, which PBT copies between trials."""
    if checkpoint is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, POINTER_FILE).write_text(json.dumps(pointer))
        tune.report({**metrics, CHECKPOINT_PATH_KEY: checkpoint}, checkpoint=tune.Checkpoint.from_directory(folder))


def _train_run(trial_id: str, runs: str) -> str:
    """The Train run name this trial continues (a run with an existing name resumes from its last checkpoint).

    New trial: its own run. Restored trial: the run its last checkpoint names.
    After a PBT exploit the checkpoint names another trial's run: continue a copy of it.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return trial_id
    with checkpoint.as_directory() as folder:
        pointer = json.loads(Path(folder, POINTER_FILE).read_text())
    if pointer["trial"] == trial_id:
        return pointer["run"]
    name = f"{trial_id}-{secrets.token_hex(3)}"
    shutil.copytree(os.path.join(runs, pointer["run"]), os.path.join(runs, name))
    return name


# ---- outcome ---------------------------------------------------------------------


class _TrialEvents(tune.Callback):
    """Runs in the sweep's driver: a "report" event per trial report, a "trial" event as each trial ends.

    Emitted here rather than in the trials: Ray deduplicates similar log lines
    of different worker processes, and would drop some of theirs.
    """

    def __init__(self, job: str):
        self._job = job  # the slots actor is found by name: a restored sweep's driver makes a new one

    def on_step_begin(self, iteration, trials, **info) -> None:
        running = [t.trial_id for t in trials if t.status == Trial.RUNNING]  # Ray Tune's trial status
        ray.get_actor(_slots_name(self._job)).sync.remote(running)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        record = trial_record(trial.trial_id, trial.config, trial.status, result)
        emit("report", trial_id=trial.trial_id, metrics=record["metrics"], checkpoint=record["checkpoint"])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        emit("trial", **trial_record(trial.trial_id, trial.config, "TERMINATED", trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = trial.error_file and Path(trial.error_file).read_text()[-500:]
        emit("trial", **trial_record(trial.trial_id, trial.config, "ERROR", trial.last_result, error))


def trial_record(trial_id: str, config: dict, state: str, result: dict,
                 error: str | None = None) -> dict[str, Any]:
    """One trial as orch shows it: its sampled config, state, last metrics and checkpoint."""
    metrics = {k: v for k, v in (result or {}).items() if k not in _NOT_METRICS}
    return {
        "trial_id": trial_id, "config": config, "state": state,
        "checkpoint": metrics.pop(CHECKPOINT_PATH_KEY, None),
        "accelerator": metrics.pop(ACCELERATOR_KEY, None),  # the trial's slot, reported with its metrics
        "duration_s": (result or {}).get("time_total_s"),
        "metrics": metrics, "error": error,
    }


def _summary(grid, spec: JobSpec, path: str) -> dict[str, Any]:
    trials = [trial_record(r.metrics.get("trial_id") or Path(r.path).name, r.config,
                           "ERROR" if r.error else "TERMINATED", r.metrics,
                           f"{type(r.error).__name__}: {r.error}"[-500:] if r.error else None)
              for r in grid]
    try:
        best = grid.get_best_result()  # the TuneConfig's metric and mode, on each trial's last report
    except RuntimeError:
        errors = "; ".join(t["error"] for t in trials if t["error"])
        raise TrainingFailed(f"no trial reported {spec.sweep.metric!r}" + (f": {errors}" if errors else ""))
    record = next(t for t in trials if t["trial_id"] == best.metrics.get("trial_id"))
    return {"metrics": record["metrics"], "checkpoint": record["checkpoint"],
            "best_config": {**spec.config, **best.config}, "best_trial": record["trial_id"],
            "trials": trials, "path": path}
