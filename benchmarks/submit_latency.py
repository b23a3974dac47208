"""Submit latency: `orch submit` (returns a job id) vs `ray job submit --no-wait`, in one run.

Both submit the digits example (same working_dir) to the same local cluster,
alternating, ROUNDS times each; each job is stopped right after it is
submitted so no run loads the machine for the next. The figure is the ratio
of median wall times measured from the shell (target <= 1.0).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROUNDS = int(os.environ.get("ROUNDS", "7"))


def timed(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def main() -> None:
    env = {**os.environ, "ORCH_HOME": tempfile.mkdtemp(prefix="orch-bench-"), "RAY_AUTH_MODE": "token"}
    env.pop("ORCH_ADDRESS", None)
    subprocess.run([str(BIN / "orch"), "up"], env=env, check=True, capture_output=True)
    os.environ["ORCH_HOME"] = env["ORCH_HOME"]
    from orchestrator.adapters import cluster

    dashboard = cluster.require(None).dashboard_url
    orch_s, ray_s = [], []
    try:
        for n in range(ROUNDS):
            seconds, out = timed([str(BIN / "orch"), "submit", "jobs/digits/torch-mlp.yaml", "--json"], env)
            orch_s.append(seconds)
            subprocess.run([str(BIN / "orch"), "cancel", json.loads(out)["job"]], env=env, capture_output=True)
            ray_id = f"plain-latency-{n}-{int(time.time())}"
            seconds, _ = timed([str(BIN / "ray"), "job", "submit", "--address", dashboard, "--no-wait",
                                "--submission-id", ray_id, "--working-dir", "jobs/digits", "--",
                                "python", str(REPO / "benchmarks" / "plain_train.py")], env)
            ray_s.append(seconds)
            subprocess.run([str(BIN / "ray"), "job", "stop", "--address", dashboard, ray_id],
                           env=env, capture_output=True)
            print(f"round {n + 1}: orch submit {orch_s[-1]:.2f} s, ray job submit --no-wait {ray_s[-1]:.2f} s",
                  flush=True)
    finally:
        subprocess.run([str(BIN / "orch"), "down"], env=env, capture_output=True)
    orch_m, ray_m = statistics.median(orch_s), statistics.median(ray_s)
    print(f"submit_latency: orch submit / ray job submit --no-wait = {orch_m / ray_m:.3f} "
          f"(median of {ROUNDS}: orch {orch_m:.2f} s, ray {ray_m:.2f} s; target <= 1.0)")


if __name__ == "__main__":
    main()
