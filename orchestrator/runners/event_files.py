"""TensorBoard event files of every report a Ray Train run makes, in the run's folder beside
its checkpoints (a sweep: each trial's Train run, so one TensorBoard run per trial).

Ray Train (2.60, V2) writes none; Ray Tune's ``TBXLoggerCallback`` writes a trial's
results, but a plain training job has no Tune. This is a Train controller callback:
``after_report`` sees every ``ray.train.report`` of every worker once they all made it
(``metrics[i]`` is rank i's), whatever the framework and wherever the loop reports from;
rank 0's numbers are written (``core.curves.scalars``, at ``core.curves.step``).

The writer is tensorboardX: a maintained, framework-free writer that Ray Tune depends on,
so it is where every orch job runs (torch, TensorFlow or JAX), which ``tensorboard`` itself
(whose writer needs TensorFlow or torch) is not; the files are the same format.
"""

from __future__ import annotations

import os
from typing import Any

from ray.train import UserCallback

from orchestrator.core import curves
from orchestrator.runners.emit import emit


class EventFiles(UserCallback):
    """Writes rank 0's numbers of each report as TensorBoard scalars into ``<storage>/<run name>``."""

    def __init__(self):
        self._writer = None  # opened in the controller on the first report, never pickled open
        self._reports = 0
        self._broken = False

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if not metrics or self._broken:
            return
        self._reports += 1
        try:
            writer = self._writer or self._open(run_context.get_run_config())
            at = curves.step(metrics[0], self._reports)
            for tag, value in curves.scalars(metrics[0]).items():
                writer.add_scalar(tag, value, global_step=at)
            writer.flush()  # TensorBoard running beside the job shows each report as it comes
        except OSError as error:  # storage full or gone: training goes on without its curve
            self._broken = True
            emit("warning", message=f"TensorBoard event files stopped: {type(error).__name__}: {error}")

    def _open(self, run_config):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(os.path.join(run_config.storage_path, run_config.name))
        return self._writer
