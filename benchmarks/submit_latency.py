"""Submit latency: `orch submit` (returns a job id) vs `ray job submit --no-wait`, in one run;
then `orch submit` from 10 and 50 parallel clients.

Both submit the digits example (same working_dir) to the same local cluster,
alternating, ROUNDS times each; each job is stopped right after it is
submitted so no run loads the machine for the next. The figure is the ratio
of median wall times measured from the shell (target <= 0.5).

Then CLIENTS parallel clients each submit PER_CLIENT jobs while a sleeping
blocker holds every CPU, so the jobs queue and none runs to load the machine:
p50 and p99 of the submit wall times (targets with 10 clients on 2 cores:
p50 <= 1 s, p99 <= 3 s), and every returned id must be in `orch list` once,
with no job of the run there twice (lost and doubled: 0).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROUNDS = int(os.environ.get("ROUNDS", "7"))
CLIENTS = tuple(int(n) for n in os.environ.get("CLIENTS", "10,50").split(","))
PER_CLIENT = int(os.environ.get("PER_CLIENT", "3"))
WHERE = REPO / "tests" / "data" / "placement"  # where.py:train_loop sleeps config.hold_s, nothing more


def timed(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def accounted(returned: list[str], listed: list[str]) -> tuple[int, int]:
    """(lost, doubled): returned ids `orch list` lacks, and ids given twice or listed twice."""
    lost = len(set(returned) - set(listed))
    doubled = (len(returned) - len(set(returned))) + (len(listed) - len(set(listed)))
    return lost, doubled


def serial(env: dict, dashboard: str) -> tuple[list[float], list[float]]:
    """ROUNDS of `orch submit` and `ray job submit --no-wait`, alternating; their wall times."""
    orch_s, ray_s = [], []
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
    return orch_s, ray_s


def _spec(folder: Path, name: str, cpus: int, priority: int, hold_s: int) -> Path:
    spec = {"name": name, "entrypoint": "where.py:train_loop", "working_dir": str(WHERE),
            "config": {"out": str(folder), "hold_s": hold_s}, "schedule": {"priority": priority},
            "resources": {"workers": 1, "cpus": cpus, "memory": "256MiB"}}
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    return path


def parallel(env: dict, folder: Path, clients: int) -> tuple[list[float], int, int]:
    """``clients`` clients each submitting PER_CLIENT queued jobs at once: wall times, lost, doubled."""
    from orchestrator.client import api

    name = f"bench-parallel-{clients}"
    path = _spec(folder, name, 1, 100, 0)

    def client(_: int) -> list[tuple[str, float]]:
        runs = [timed([str(BIN / "orch"), "submit", str(path), "--json"], env) for _ in range(PER_CLIENT)]
        return [(json.loads(out)["job"], seconds) for seconds, out in runs]

    with ThreadPoolExecutor(clients) as pool:
        submitted = [run for runs in pool.map(client, range(clients)) for run in runs]
    ids = [job for job, _ in submitted]
    lost, doubled = accounted(ids, [view.job for view in api.list_jobs() if view.name == name])
    for job in ids:
        api.cancel(job)
    return [seconds for _, seconds in submitted], lost, doubled


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    env = {**os.environ, "ORCH_HOME": str(folder / "home"), "RAY_AUTH_MODE": "token"}
    env.pop("ORCH_ADDRESS", None)
    subprocess.run([str(BIN / "orch"), "up"], env=env, check=True, capture_output=True)
    os.environ["ORCH_HOME"] = env["ORCH_HOME"]
    from orchestrator.client import api

    loads = []
    try:
        orch_s, ray_s = serial(env, api.cluster_view()["dashboard"])
        cpus = int(max(node["total"].get("CPU", 0) for node in api.cluster_view()["nodes"]))
        _, out = timed([str(BIN / "orch"), "submit", str(_spec(folder, "bench-blocker", cpus, 1000, 3600)),
                        "--json"], env)  # holds every CPU, asleep: the parallel jobs queue
        for clients in CLIENTS:
            seconds, lost, doubled = parallel(env, folder, clients)
            loads.append((clients, statistics.median(seconds), percentile(seconds, 0.99), lost, doubled))
            print(f"{clients} parallel clients, {len(seconds)} submits: p50 {loads[-1][1]:.2f} s, "
                  f"p99 {loads[-1][2]:.2f} s, lost {lost}, doubled {doubled}", flush=True)
        api.cancel(json.loads(out)["job"])
    finally:
        subprocess.run([str(BIN / "orch"), "down"], env=env, capture_output=True)
    orch_m, ray_m = statistics.median(orch_s), statistics.median(ray_s)
    under_load = "; ".join(f"{c} clients p50 {p50:.2f} s p99 {p99:.2f} s lost {lost} doubled {doubled}"
                           for c, p50, p99, lost, doubled in loads)
    print(f"submit_latency: orch submit / ray job submit --no-wait = {orch_m / ray_m:.3f} "
          f"(median of {ROUNDS}: orch {orch_m:.2f} s, ray {ray_m:.2f} s; target <= 0.5; {under_load})")
    if any(lost or doubled for *_, lost, doubled in loads):
        sys.exit(1)


if __name__ == "__main__":
    main()
