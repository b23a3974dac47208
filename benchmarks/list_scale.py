"""`orch list` with 1,000 jobs in the store vs `ray job list`, in one run.

The store gets 1,000 finished jobs (written through orch's own Store, as the
control plane writes them), then `orch list --json` and `ray job list` are
timed from the shell on the same cluster, alternating, ROUNDS times each.
Targets: orch list < 1 s, and its ratio to `ray job list` (which lists no
jobs here, so it is the bare cost of asking Ray) printed last.
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
ROUNDS = int(os.environ.get("ROUNDS", "5"))
JOBS = 1000


def timed(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def fill(home: Path) -> None:
    from orchestrator.control.service import DB_NAME
    from orchestrator.control.store import Store
    from orchestrator.core.lifecycle import JobState
    from orchestrator.load.spec import load_spec

    spec = load_spec(REPO / "jobs/digits/torch-mlp.yaml").model_copy(update={"name": "filler"})
    store = Store(home / DB_NAME)
    for n in range(JOBS):
        job = f"filler-{n:04d}"
        store.insert(job, spec, spec.model_dump(mode="json"), {"runtime_env": {}})
        store.transition(job, JobState.CANCELLED, "benchmark filler", ended_at=time.time())
    store.close()


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    env = {**os.environ, "ORCH_HOME": str(home), "RAY_AUTH_MODE": "token"}
    env.pop("ORCH_ADDRESS", None)
    subprocess.run([str(BIN / "orch"), "up"], env=env, check=True, capture_output=True)
    os.environ["ORCH_HOME"] = str(home)
    try:
        from orchestrator.adapters import cluster

        dashboard = cluster.require(None).dashboard_url
        fill(home)
        orch_s, ray_s = [], []
        for _ in range(ROUNDS):
            seconds, out = timed([str(BIN / "orch"), "list", "--json"], env)
            assert len(json.loads(out)) == JOBS, "orch list must show every job"
            orch_s.append(seconds)
            ray_s.append(timed([str(BIN / "ray"), "job", "list", "--address", dashboard], env)[0])
    finally:
        subprocess.run([str(BIN / "orch"), "down"], env=env, capture_output=True)
    orch_m, ray_m = statistics.median(orch_s), statistics.median(ray_s)
    print(f"orch list of {JOBS} jobs: median {orch_m:.2f} s (target < 1 s); ray job list: median {ray_m:.2f} s")
    print(f"list_scale: orch list ({JOBS} jobs) / ray job list = {orch_m / ray_m:.3f}")


if __name__ == "__main__":
    main()
