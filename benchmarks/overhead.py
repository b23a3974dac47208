"""Overhead of orch over plain Ray for one training job, measured in one run.

orch: `orch submit jobs/digits/torch-mlp.yaml --wait`.
plain Ray: `ray job submit --wait` of benchmarks/plain_train.py, a hand-written
TorchTrainer over the same loop, data and settings.
Both run on the same local cluster (started by orch first, not timed),
alternating, ROUNDS times each; the ratio of medians is the figure.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def compare(label: str, orch_args: list[str], plain_script: list[str], rounds: int, target: str) -> None:
    """Time `orch submit ARGS --wait` against `ray job submit --wait` of a hand-written script
    (run with jobs/digits as its working_dir) on one local cluster, alternating; print the
    ratio of medians last."""
    env = {**os.environ, "ORCH_HOME": tempfile.mkdtemp(prefix="orch-bench-"), "RAY_AUTH_MODE": "token"}
    env.pop("ORCH_ADDRESS", None)
    subprocess.run([str(BIN / "orch"), "up"], env=env, check=True, capture_output=True)
    try:
        from orchestrator.adapters import cluster

        os.environ["ORCH_HOME"] = env["ORCH_HOME"]
        dashboard = cluster.require(None).dashboard_url
        orch_cmd = [str(BIN / "orch"), "submit", *orch_args, "--wait", "--json"]
        plain_cmd = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--working-dir",
                     "jobs/digits", "--", "python", *plain_script]
        orch_s, plain_s = [], []
        for round_ in range(rounds):
            orch_s.append(timed(orch_cmd, env))
            plain_s.append(timed(plain_cmd, env))
            print(f"round {round_ + 1}: orch {orch_s[-1]:.1f} s, plain Ray {plain_s[-1]:.1f} s", flush=True)
    finally:
        subprocess.run([str(BIN / "orch"), "down"], env=env, capture_output=True)
    ratio = statistics.median(orch_s) / statistics.median(plain_s)
    print(f"{label} = {ratio:.3f} (median of {rounds}: orch {statistics.median(orch_s):.1f} s, "
          f"plain {statistics.median(plain_s):.1f} s; target {target})")


def main() -> None:
    compare("overhead: orch submit --wait / ray job submit --wait", ["jobs/digits/torch-mlp.yaml"],
            [str(REPO / "benchmarks" / "plain_train.py")], ROUNDS, "<= 1.10")


if __name__ == "__main__":
    main()
