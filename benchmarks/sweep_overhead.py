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
import statistics
import subprocess
import sys
import tempfile

from overhead import BIN, REPO, timed  # benchmarks/ is this script's folder

ROUNDS = int(os.environ.get("ROUNDS", "2"))  # a round is two sweeps of several minutes each


def main() -> None:
    env = {**os.environ, "ORCH_HOME": tempfile.mkdtemp(prefix="orch-bench-"), "RAY_AUTH_MODE": "token"}
    env.pop("ORCH_ADDRESS", None)
    subprocess.run([str(BIN / "orch"), "up"], env=env, check=True, capture_output=True)
    try:
        from orchestrator import cluster

        os.environ["ORCH_HOME"] = env["ORCH_HOME"]
        dashboard = cluster.require(None).dashboard_url
        orch_cmd = [str(BIN / "orch"), "submit", "jobs/digits/torch-sweep.yaml", "--set", "sweep.scheduler=fifo",
                    "--wait", "--json"]
        plain_cmd = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--working-dir", "jobs/digits",
                     "--", "python", str(REPO / "benchmarks" / "plain_sweep.py"), "fifo"]
        orch_s, plain_s = [], []
        for round_ in range(ROUNDS):
            orch_s.append(timed(orch_cmd, env))
            plain_s.append(timed(plain_cmd, env))
            print(f"round {round_ + 1}: orch {orch_s[-1]:.1f} s, plain Ray {plain_s[-1]:.1f} s", flush=True)
    finally:
        subprocess.run([str(BIN / "orch"), "down"], env=env, capture_output=True)
    ratio = statistics.median(orch_s) / statistics.median(plain_s)
    print(f"sweep overhead: orch submit --wait / hand-written Tuner via ray job submit --wait = {ratio:.3f} "
          f"(8 trials, median of {ROUNDS}: orch {statistics.median(orch_s):.1f} s, "
          f"plain {statistics.median(plain_s):.1f} s; target <= 1.10)")


if __name__ == "__main__":
    sys.exit(main())
