"""What ETAs cost: one control step and one forecast (core/forecast.py) with 1,000 queued jobs.

    .venv/bin/python benchmarks/forecast_scale.py

The scheduling_trace cluster (100 nodes) and job mix: the first jobs of a
1,000-job trace that fit are started (each with its true runtime as its
estimate, started at different times), and 1,000 more wait, all with
estimates. One control step is ``decide`` with reasons, as the control plane
asks; a forecast runs the policy forward until every job has started and
ended, about one step per start and end it foresees. Target (issue 20): the
control step well under a second. The last line is the figure: a forecast in
control steps.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scheduling_trace import NODES, QUEUES, SHAPES, cluster, make_trace  # noqa: E402
from orchestrator.core.allocator import plan  # noqa: E402
from orchestrator.core.forecast import forecast  # noqa: E402
from orchestrator.core.policy.decide import decide  # noqa: E402
from orchestrator.core.policy.state import QueuedJob, QueueState  # noqa: E402

QUEUED = 1000
SEED = 3


def state_with_queue() -> QueueState:
    rng = random.Random(SEED)
    state = QueueState(cluster(NODES, QUEUES, "bench-100"), now=300.0)
    trace = make_trace(SHAPES, None, 2 * QUEUED, spread_s=600.0, seed=SEED)
    for seq, job in enumerate(trace):
        queued = QueuedJob(job.name, job.spec, seq, job.runtime_s)
        state.enqueue(queued)
        placed = plan(job.spec, state.snapshot)
        if len(state.pending) > QUEUED and placed.status == "placeable":
            state.start(job.name, placed, started=rng.uniform(0, 300))
        elif len(state.pending) > QUEUED:
            state.pending.remove(job.name)
    return state


def timed(work, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    state = state_with_queue()
    step = timed(lambda: decide(state))
    ahead = forecast(state)
    elapsed = timed(lambda: forecast(state), repeat=1)
    known = sum(f.start_s is not None for f in ahead.values())
    print(f"{len(state.running)} running, {len(state.pending)} queued on {len(state.snapshot.nodes)} nodes")
    print(f"one control step (decide with reasons): {step * 1000:.0f} ms (target well under 1 s)")
    print(f"forecast: {elapsed:.2f} s; {known} of {len(ahead)} jobs with a start, last end "
          f"{max(f.end_s or 0 for f in ahead.values()) - state.now:.0f} s from now")
    print(f"forecast of {len(state.pending)} queued jobs in control steps: {elapsed:.2f} s / {step:.3f} s = "
          f"{elapsed / step:.0f} (a forecast per ETA refresh, not per step)")


if __name__ == "__main__":
    main()
