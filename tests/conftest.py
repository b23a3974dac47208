"""One local Ray cluster for the whole test session, started by orch itself.

ORCH_HOME points at a private folder so the suite never touches a user's
cluster, and every subprocess (`orch ...`) inherits it. Only the processes
this session started are stopped, by process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from orchestrator.adapters import auth
from orchestrator.core.lifecycle import TERMINAL

# Ray reads its auth mode once, when its first client starts: set it before any test imports Ray.
auth.apply_to_environ()

REPO = Path(__file__).resolve().parents[1]
ORCH = str(Path(sys.executable).with_name("orch"))
PLACEMENT = REPO / "tests" / "data" / "placement"  # where.py: each worker writes where Ray placed it


@pytest.fixture(scope="session")
def orch_home():
    # Short path: Ray's unix sockets live under it and have a 107-byte limit.
    home = Path(tempfile.mkdtemp(prefix="orch-"))
    previous = os.environ.get("ORCH_HOME")
    os.environ["ORCH_HOME"] = str(home)
    os.environ.pop("ORCH_ADDRESS", None)
    yield home
    if previous is None:
        os.environ.pop("ORCH_HOME", None)
    else:
        os.environ["ORCH_HOME"] = previous


@pytest.fixture(scope="session")
def local_cluster(orch_home):
    from orchestrator.adapters import cluster

    info = cluster.up(progress=lambda _: None)
    try:
        yield info
        left = leftovers(info)
        record_figure("leaks: orch-made actors, placement groups, running Ray jobs after the suite",
                      sum(len(v) for v in left.values()), "0", not any(left.values()))
        assert not any(left.values()), f"the suite left these behind: {left}"
    finally:
        cluster.down(progress=lambda _: None)


def leftovers(info) -> dict[str, list[str]]:
    """What orch's jobs left alive on the cluster, read through Ray's state API: actors and
    placement groups of orch's Ray jobs, and Ray jobs that still run."""
    from orchestrator.adapters.http import http
    from orchestrator.adapters.jobs import JobsClient

    jobs = [j for j in JobsClient(info).list() if (j.get("metadata") or {}).get("orch_job")]
    ids = {j["job_id"] for j in jobs if j.get("job_id")}

    def alive(kind: str, state: str) -> list[dict]:
        query = f"/api/v0/{kind}?detail=1&limit=10000&filter_keys=state&filter_predicates=%3D&filter_values={state}"
        return http(info.dashboard_url, query)["data"]["result"]["result"]

    # Ray's libraries keep detached singletons per cluster (Train's _AutoscalingCoordinatorActor):
    # Ray's by design, not orch's. orch makes no detached actors; its named ones start with "orch-".
    return {
        "actors": [f"{a['class_name']} {a['actor_id'][:8]}" for a in alive("actors", "ALIVE")
                   if (a.get("job_id") in ids and not a.get("is_detached"))
                   or (a.get("name") or "").startswith("orch-")],
        "placement_groups": [g["placement_group_id"][:8] for g in alive("placement_groups", "CREATED")
                             if g.get("creator_job_id") in ids],
        "jobs": [j["submission_id"] for j in jobs if j["status"] in ("PENDING", "RUNNING")],
    }


def where_job(tmp_path: Path, name: str, resources: dict, **config) -> Path:
    """A job file (under ``tmp_path``) running ``where.py`` with ``resources`` (1GiB memory unless
    given) and ``config``: each worker writes the node it ran on to ``tmp_path/out``."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    spec = {"name": name, "entrypoint": "where.py:train_loop", "working_dir": str(PLACEMENT),
            "config": {"out": str(out), **config}, "resources": {"memory": "1GiB", **resources}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    return path


def record_figure(check: str, value: float, target: str, holds: bool) -> None:
    """A row for README's reliability table: appended to $ORCH_FIGURES when the
    report script (tests/reliability/report.py) runs the suite; a no-op otherwise."""
    path = os.environ.get("ORCH_FIGURES")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"check": check, "value": value, "target": target, "holds": holds}) + "\n")


def run_orch(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `orch` CLI in a subprocess, as a user would."""
    return subprocess.run([ORCH, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


def wait_until_ended(job: str, timeout: float = 600) -> dict:
    """Poll `orch status JOB --json` until the job ends; its last view."""
    deadline = time.monotonic() + timeout
    while True:
        done = run_orch("status", job, "--json")
        assert done.returncode == 0, done.stderr
        view = json.loads(done.stdout)
        if view["state"] in TERMINAL:
            return view
        assert time.monotonic() < deadline, f"{job} did not end within {timeout:.0f} s: {view}"
        time.sleep(2)


@contextlib.contextmanager
def own_cluster(cluster_file: str | None, prefix: str, home: str | None = None):
    """A second cluster under its own ORCH_HOME (``home``, or a new folder), set while the
    block runs (beside the session's)."""
    from orchestrator.client import api as cluster

    home = home or tempfile.mkdtemp(prefix=prefix)  # short: Ray's unix sockets live under it
    previous = os.environ["ORCH_HOME"]
    os.environ["ORCH_HOME"] = home
    try:
        cluster.up(cluster_file, progress=lambda _: None)
        yield home
    finally:
        cluster.down(progress=lambda _: None)
        os.environ["ORCH_HOME"] = previous


def http_status(url: str, token: str | None = None) -> int:
    """The HTTP status a GET gets, with ``Authorization: Bearer TOKEN`` when a token is given
    (an empty one included); 0 when nothing listens."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def tensorboard_scalars(folder: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every run under ``folder`` as TensorBoard's own reader loads it: run folder (relative,
    ``.`` for ``folder`` itself) -> tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for run in sorted({path.parent for path in Path(folder).rglob("events.out.tfevents.*")}):
        reader = EventAccumulator(str(run))
        reader.Reload()
        found[str(run.relative_to(folder))] = {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
                                               for tag in reader.Tags()["scalars"]}
    return found


@contextlib.contextmanager
def tensorboard_served(*jobs: str):
    """`orch tensorboard JOBS` running: yields its URL, stops it by its PID (as Ctrl-C does)."""
    import signal

    served = subprocess.Popen([ORCH, "tensorboard", *jobs], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        line = served.stdout.readline()  # printed once TensorBoard answers: "TensorBoard URL (pid N; ...)"
        assert line.startswith("TensorBoard http://127.0.0.1:"), line + served.stderr.read()
        child = int(line.split("(pid ")[1].split(";")[0])
        yield line.split()[1]
    finally:
        served.send_signal(signal.SIGINT)
        served.wait(60)
    assert served.returncode == 130, served.stderr.read()  # as Ctrl-C
    with pytest.raises(ProcessLookupError):  # orch stopped TensorBoard too
        os.kill(child, 0)
