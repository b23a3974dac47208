"""One control-plane step with 1,000 queued jobs, against a fake Ray, in one run.

The store (orch's own, on disk) holds one running job that fills the cluster and
JOBS queued jobs behind it, so every step reconciles, checks time limits and asks
the policy about all of them, admitting none. A step is timed ROUNDS times; the
baseline, measured in the same run, is the same step with no job queued. The ratio
printed last is what the queue adds to a step (validating each queued spec anew
every step once cost most of it).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.control.loop import Control  # noqa: E402
from orchestrator.control.store import Store  # noqa: E402
from orchestrator.core.snapshot import ClusterSnapshot, Node  # noqa: E402
from orchestrator.load.spec import load_spec  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "20"))
JOBS = 1000
TOTAL = {"CPU": 2.0, "memory": 8 * 1024**3}  # the example's 2 workers x 1 CPU fill it


class QuietRay:
    """Ray's Jobs API as the control plane calls it: every submitted job keeps running."""

    def __init__(self):
        self.jobs: dict[str, dict] = {}

    def submit(self, *, entrypoint, submission_id, runtime_env, metadata):
        self.jobs[submission_id] = {"submission_id": submission_id, "status": "RUNNING", "message": ""}

    def list(self):
        return list(self.jobs.values())

    def ensure_package(self, name, path, anew=False):
        pass

    def logs(self, submission_id):
        return ""


def control_with(queued: int) -> Control:
    """A control plane whose cluster one running job fills, with ``queued`` jobs waiting."""
    folder = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    snapshot = ClusterSnapshot("bench", (Node("local-0", TOTAL, dict(TOTAL)),))
    control = Control(Store(folder / "control.db"), QuietRay(), lambda: snapshot, str(folder / "storage"))
    spec = load_spec(REPO / "jobs/digits/torch-mlp.yaml").model_dump(mode="json")
    submission = {"spec": spec, "request": {"runtime_env": {"env_vars": {}}}}
    control.submit({**submission, "job": "running"})
    control.step()
    for n in range(queued):
        control.submit({**submission, "job": f"queued-{n:04d}"})
    return control


def step_s(control: Control) -> float:
    """The median of ROUNDS steps, in seconds (the first one, which fills caches, is not counted)."""
    control.step()
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        decision = control.step()
        times.append(time.perf_counter() - start)
        assert not decision.admit, "the queued jobs must wait: the cluster is full"
    return statistics.median(times)


def main() -> None:
    empty, full = step_s(control_with(0)), step_s(control_with(JOBS))
    print(f"control step: {JOBS} queued: median {full * 1000:.1f} ms; none queued: median {empty * 1000:.1f} ms")
    print(f"control_step: step with {JOBS} queued / step with none = {full / empty:.1f}")


if __name__ == "__main__":
    main()
