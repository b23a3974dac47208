"""TensorBoard event files of every report a Ray Train run makes, in the run's folder beside
its checkpoints (a sweep: each trial's Train run, so one TensorBoard run per trial).

Ray Train (2.60, V2) writes none; Ray Tune's ``TBXLoggerCallback`` writes a trial's
results, but a plain training job has no Tune. This is a Train controller callback:
``after_report`` sees every ``ray.train.report`` of every worker once they all made it
(``metrics[i]`` is rank i's), whatever the framework and wherever the loop reports from;
rank 0's numbers are written (``core.curves.scalars``, at ``core.curves.step``).

The writer is tensorboardX's: maintained, framework-free, and a dependency of Ray Tune, so
it is wherever an orch job runs (torch, TensorFlow or JAX), which ``tensorboard`` (whose
writers need TensorFlow or torch) is not. Its synchronous ``EventsWriter``, not its
``SummaryWriter``: that one writes from a queue whose ``flush()`` does not wait for it, and
a run's last report was lost when the controller ended right after it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ray.train import UserCallback
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary

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
            values = [Summary.Value(tag=tag, simple_value=value) for tag, value in curves.scalars(metrics[0]).items()]
            writer.write_event(Event(wall_time=time.time(), step=curves.step(metrics[0], self._reports),
                                     summary=Summary(value=values)))
            writer.flush()  # on disk now: TensorBoard running beside the job shows each report as it comes
        except OSError as error:  # storage full or gone: training goes on without its curve
            self._broken = True
            emit("warning", message=f"TensorBoard event files stopped: {type(error).__name__}: {error}")

    def _open(self, run_config):
        folder = os.path.join(run_config.storage_path, run_config.name)
        os.makedirs(folder, exist_ok=True)
        self._writer = EventsWriter(os.path.join(folder, "events"))  # events.out.tfevents.<time>.<host>
        return self._writer
