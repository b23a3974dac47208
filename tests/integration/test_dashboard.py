"""The Ray dashboard on the shared local cluster, read as its Jobs page reads it (issue 23):
each orch job's Ray job carries the orch name as ``job_name`` and a readable entrypoint, a
requeued job's attempts are named ``name (attempt N)``, and `orch dashboard` serves the Jobs
API with HTTP 200 while the user never handles the token. The screenshot (soak) renders the
Jobs page in headless Chromium through `orch dashboard` (docs/dashboard_screenshot.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest

from orchestrator.adapters.jobs import JobsClient
from orchestrator.core.lifecycle import JobState
from tests.conftest import ORCH, REPO, run_orch, wait_until_ended

pytestmark = pytest.mark.ray
SPEC = "jobs/digits/torch-mlp.yaml"
READABLE = "python -m orchestrator.runners.entry {job}  # torch train_torch.py:train_loop"


def _submit(*sets: str) -> str:
    done = run_orch("submit", SPEC, "--json", *[a for s in sets for a in ("--set", s)])
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["job"]


@contextlib.contextmanager
def _orch_dashboard() -> Iterator[str]:
    """`orch dashboard` as a user runs it, its URL; Ctrl-C ends it (exit 130, no traceback)."""
    running = subprocess.Popen([ORCH, "dashboard"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO)
    try:
        line = running.stdout.readline()
        assert line.startswith("dashboard http://127.0.0.1:"), line + running.stderr.read()
        yield line.split()[1]
    finally:
        running.send_signal(signal.SIGINT)
        _, err = running.communicate(timeout=30)
    assert running.returncode == 130 and "Traceback" not in err, err


def _get_json(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=30) as reply:  # no token: the proxy adds it
        return reply.status, json.loads(reply.read())


def test_the_jobs_api_through_orch_dashboard_names_each_job(local_cluster):
    job = _submit("name=dash-named", "config.epochs=1")
    assert wait_until_ended(job)["state"] == JobState.SUCCEEDED
    with pytest.raises(urllib.error.HTTPError) as refused:  # the dashboard itself asks for the token
        urllib.request.urlopen(f"{local_cluster.dashboard_url}/api/jobs/", timeout=30)
    assert refused.value.code in (401, 403)
    with _orch_dashboard() as url:
        status, rows = _get_json(f"{url}api/jobs/")
    assert status == 200
    [row] = [r for r in rows if r["submission_id"] == job]
    assert row["metadata"]["job_name"] == "dash-named" and row["metadata"]["orch_job"] == job
    assert row["entrypoint"] == READABLE.format(job=job)


@pytest.mark.soak  # a preemption, ~1.5 min: `make soak` (test_queue_control preempts in make test)
def test_a_requeued_jobs_attempts_are_named_with_their_attempt(local_cluster):
    low = _submit("name=dash-low", "schedule.priority=10", "schedule.preemptible=true", "config.epochs=10")
    deadline = time.monotonic() + 300
    while (json.loads(run_orch("status", low, "--json").stdout)["metrics"] or {}).get("epoch", -1) < 1:
        assert time.monotonic() < deadline, f"{low} reported no epoch within 300 s"
        time.sleep(1)
    high = _submit("name=dash-high", "schedule.priority=500", "config.epochs=1")
    assert wait_until_ended(high)["state"] == JobState.SUCCEEDED
    assert wait_until_ended(low)["state"] == JobState.SUCCEEDED
    rows = {r["submission_id"]: r for r in JobsClient(local_cluster).list()}
    assert rows[low]["metadata"]["job_name"] == "dash-low" and rows[low]["status"] == "STOPPED"
    second = rows[f"{low}-attempt2"]
    assert second["metadata"]["job_name"] == "dash-low (attempt 2)" and second["metadata"]["orch_job"] == low
    assert second["entrypoint"] == READABLE.format(job=low)


@pytest.mark.soak
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="needs chromium")
def test_a_screenshot_of_the_jobs_page_shows_the_job_names(local_cluster, tmp_path):
    job = _submit("name=dash-shot", "config.epochs=1")
    assert wait_until_ended(job)["state"] == JobState.SUCCEEDED
    shot = tmp_path / "dashboard-jobs.png"
    done = subprocess.run([sys.executable, str(REPO / "docs" / "dashboard_screenshot.py"), "--out", str(shot)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dash-shot" in done.stdout and shot.read_bytes().startswith(b"\x89PNG")
