"""Overhead of an orch sweep over the same sweep written by hand, measured in one run.

orch: `orch submit jobs/digits/torch-sweep.yaml --wait` (8 trials, Optuna).
plain Ray: `ray job submit --wait` of benchmarks/plain_sweep.py, a hand-written
Tuner over the same loop, space, searcher and per-trial resources.
Both use the fifo scheduler: with ASHA, which trials stop early depends on
the sampled values, and that noise would swamp the overhead being measured.
Both run on the same local cluster (started by orch first, not timed),
alternating, ROUNDS times each; the ratio of medians is the figure.
"""

from __future__ import annotations

import os

from overhead import REPO, compare  # benchmarks/ is this script's folder

ROUNDS = int(os.environ.get("ROUNDS", "2"))  # a round is two sweeps of several minutes each


def main() -> None:
    compare("sweep overhead: orch submit --wait / hand-written Tuner via ray job submit --wait (8 trials)",
            ["jobs/digits/torch-sweep.yaml", "--set", "sweep.scheduler=fifo"],
            [str(REPO / "benchmarks" / "plain_sweep.py"), "fifo"], ROUNDS, "<= 1.10")


if __name__ == "__main__":
    main()
