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
with no job of the run there twice (lost and doubled: 0). The parallel
clients start once the blocker's Ray Train worker is up and has had SETTLE_S to
finish starting: its start (Ray Train, its imports) costs CPU seconds that would
otherwise be measured as submit latency. Beside the wall times: the median CPU
seconds of one `orch submit` process (user + system), which the machine's other
load changes far less, and the load average when the clients ended. Then the same
clients run benchmarks/cli_floor.py at once: a typer command that reads the spec and
makes three requests to the control plane, nothing else. Its latency is the least any
one-process-per-submit Python client with orch's CLI framework gets on this machine.

orch's own modules are compiled to bytecode first, as installing orch does:
with PYTHONDONTWRITEBYTECODE set (as in some shells and CI) an editable
checkout would otherwise compile every module in every `orch` process.
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
SETTLE_S = float(os.environ.get("SETTLE_S", "5"))


def run(args: list[str], env: dict) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system, its own) of a command, and its stdout; exits if it fails."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, with its rusage
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"failed: {' '.join(args)}\n{out[-2000:]}\n{err.read().decode()[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, out


def timed(args: list[str], env: dict) -> tuple[float, str]:
    elapsed, _, out = run(args, env)
    return elapsed, out


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


def at_once(args: list[str], env: dict, clients: int) -> list[tuple[float, float, str]]:
    """``clients`` clients each running ``args`` PER_CLIENT times, all at once: wall, CPU, stdout of each."""
    def client(_: int) -> list[tuple[float, float, str]]:
        return [run(args, env) for _ in range(PER_CLIENT)]

    with ThreadPoolExecutor(clients) as pool:
        return [one for runs in pool.map(client, range(clients)) for one in runs]


def parallel(env: dict, folder: Path, clients: int) -> tuple[list[float], list[float], int, int]:
    """``clients`` clients each submitting PER_CLIENT queued jobs at once: wall and CPU seconds, lost, doubled."""
    from orchestrator.client import api

    name = f"bench-parallel-{clients}"
    submitted = at_once([str(BIN / "orch"), "submit", str(_spec(folder, name, 1, 100, 0)), "--json"], env, clients)
    ids = [json.loads(out)["job"] for *_, out in submitted]
    lost, doubled = accounted(ids, [view.job for view in api.list_jobs() if view.name == name])
    for job in ids:
        api.cancel(job)
    return [wall for wall, *_ in submitted], [cpu for _, cpu, _ in submitted], lost, doubled


def floor(env: dict, folder: Path, clients: int) -> tuple[float, float, float]:
    """p50 and p99 wall and median CPU seconds of benchmarks/cli_floor.py from ``clients`` clients at once."""
    from orchestrator.adapters import cluster

    spec = _spec(folder, f"bench-floor-{clients}", 1, 100, 0)
    runs = at_once([sys.executable, str(REPO / "benchmarks" / "cli_floor.py"), str(spec),
                    "--control", cluster.resolve(None).control_url], env, clients)
    walls = [wall for wall, *_ in runs]
    return statistics.median(walls), percentile(walls, 0.99), statistics.median(cpu for _, cpu, _ in runs)


def started(job: str) -> None:
    """Wait until ``job`` runs with its Ray Train worker up, then SETTLE_S for the rest of its start."""
    from orchestrator.client import api

    deadline = time.monotonic() + 300
    while not (api.status(job).state == "RUNNING" and api.status(job, usage=True).workers_usage):
        if time.monotonic() > deadline:
            sys.exit(f"the blocker {job} did not start in 300 s")
        time.sleep(0.5)
    time.sleep(SETTLE_S)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    env = {**os.environ, "ORCH_HOME": str(folder / "home"), "RAY_AUTH_MODE": "token"}
    env.pop("ORCH_ADDRESS", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "orchestrator")], check=True)
    subprocess.run([str(BIN / "orch"), "up"], env=env, check=True, capture_output=True)
    os.environ["ORCH_HOME"] = env["ORCH_HOME"]
    from orchestrator.client import api

    loads = []
    try:
        orch_s, ray_s = serial(env, api.cluster_view()["dashboard"])
        cpus = int(max(node["total"].get("CPU", 0) for node in api.cluster_view()["nodes"]))
        _, out = timed([str(BIN / "orch"), "submit", str(_spec(folder, "bench-blocker", cpus, 1000, 3600)),
                        "--json"], env)  # holds every CPU, asleep: the parallel jobs queue
        started(json.loads(out)["job"])
        for clients in CLIENTS:
            seconds, cpu, lost, doubled = parallel(env, folder, clients)
            load = os.getloadavg()[0]
            least = floor(env, folder, clients)
            loads.append((clients, statistics.median(seconds), percentile(seconds, 0.99), statistics.median(cpu),
                          load, lost, doubled, least))
            print(f"{clients} parallel clients, {len(seconds)} submits: p50 {loads[-1][1]:.2f} s, "
                  f"p99 {loads[-1][2]:.2f} s, CPU per submit {loads[-1][3]:.3f} s, load average {load:.1f}, "
                  f"lost {lost}, doubled {doubled}; floor client p50 {least[0]:.2f} s, p99 {least[1]:.2f} s, "
                  f"CPU {least[2]:.3f} s", flush=True)
        api.cancel(json.loads(out)["job"])
    finally:
        subprocess.run([str(BIN / "orch"), "down"], env=env, capture_output=True)
    orch_m, ray_m = statistics.median(orch_s), statistics.median(ray_s)
    under_load = "; ".join(f"{c} clients p50 {p50:.2f} s p99 {p99:.2f} s CPU/submit {cpu:.3f} s load {load:.1f} "
                           f"lost {lost} doubled {doubled} (floor client p50 {least[0]:.2f} s CPU {least[2]:.3f} s)"
                           for c, p50, p99, cpu, load, lost, doubled, least in loads)
    print(f"submit_latency: orch submit / ray job submit --no-wait = {orch_m / ray_m:.3f} "
          f"(median of {ROUNDS}: orch {orch_m:.2f} s, ray {ray_m:.2f} s; target <= 0.5; {under_load})")
    if any(lost or doubled for *_, lost, doubled, _ in loads):
        sys.exit(1)


if __name__ == "__main__":
    main()
