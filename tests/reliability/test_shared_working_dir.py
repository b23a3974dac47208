"""Load with faults around a job's code (issue 22): 12 jobs of one resumable loop, sharing
one working_dir, submitted at once from 12 processes, with orch's home inside that folder
or with a running job writing into it; every job succeeds, and orch's own state never
ships in a package.

Slow (about 2 minutes a variant on its own cluster): `make soak` runs it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, own_cluster, record_figure, run_orch, wait_until_ended

pytestmark = [pytest.mark.ray, pytest.mark.soak]
CODE = REPO / "tests" / "data" / "resumable"  # loop.py: 6 epochs, a checkpoint each; job.yaml
JOBS = 12


def _submit(spec: Path, *sets: str) -> str:
    done = run_orch("submit", str(spec), "--json", *[a for s in sets for a in ("--set", s)])
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["job"]


@pytest.mark.parametrize("variant", ["home inside working_dir", "a job writes into working_dir"])
def test_jobs_sharing_a_working_dir_submitted_at_once_all_run(orch_home, variant):
    project = Path(tempfile.mkdtemp(prefix="orch-p-"))  # short: Ray's unix sockets live under its home
    shutil.copytree(CODE, project, dirs_exist_ok=True)
    spec = project / "job.yaml"
    home = str(project / "home") if variant.startswith("home") else None
    try:
        with own_cluster(None, "orch-shared-", home=home) as used_home:
            writer = []
            if variant.startswith("a job"):  # it runs while the others are submitted and queue
                writer = [_submit(spec, "name=writer", f"config.scribble={project}", "config.epochs=40",
                                  "config.sleep_s=0.25")]
                _wait_until_writing(project)
            with ThreadPoolExecutor(max_workers=JOBS) as pool:
                jobs = list(pool.map(lambda i: _submit(spec, f"name=shared-{i}"), range(JOBS)))
            ended = {job: wait_until_ended(job, timeout=600) for job in [*writer, *jobs]}
            shipped = {package.name: _files(package) for package in (Path(used_home) / "packages").glob("_ray_pkg_*")}
    finally:
        shutil.rmtree(project, ignore_errors=True)
    succeeded = sum(1 for view in ended.values() if view["state"] == JobState.SUCCEEDED)
    record_figure(f"jobs sharing a working_dir ({variant}), {JOBS} submitted at once: succeeded",
                  succeeded, f"{len(ended)}", succeeded == len(ended))
    assert succeeded == len(ended), {job: (v["state"], v["reason"]) for job, v in ended.items()}
    assert all(view["restarts"] == 0 for view in ended.values())
    assert shipped and not {name: files for name, files in shipped.items()  # orch's own state never ships
                            if any(file.startswith("home/") for file in files)}


def _files(package: Path) -> list[str]:
    with zipfile.ZipFile(package) as archive:
        return archive.namelist()


def _wait_until_writing(project: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(project.glob("out-*.txt")):
        assert time.monotonic() < deadline, "the writer job never wrote"
        time.sleep(0.5)
