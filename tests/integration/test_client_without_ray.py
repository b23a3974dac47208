"""A user's `orch` runs a job with Ray unimportable in its process (issue 25): it packages the
working_dir itself and talks HTTP to the control plane and Ray's Jobs API; only the control
plane, beside Ray, uses Ray's own code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, run_orch

pytestmark = pytest.mark.ray
CODE = REPO / "tests" / "data" / "resumable"  # loop.py: an epoch a second, a checkpoint each; job.yaml


def test_a_job_submitted_followed_and_read_without_ray_in_the_client_succeeds(local_cluster, tmp_path):
    shim = tmp_path / "no-ray"
    (shim / "ray").mkdir(parents=True)
    (shim / "ray" / "__init__.py").write_text("raise ImportError('Ray is not importable in this client')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))}
    refused = subprocess.run([sys.executable, "-c", "import ray"], env={**os.environ, **env},
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "not importable in this client" in refused.stderr
    code = tmp_path / "code"
    shutil.copytree(CODE, code)
    (code / "stamp.txt").write_text(uuid.uuid4().hex)  # a package of its own: this client makes and sends it
    (code / ".rayignore").write_text("scratch/\n")
    (code / "scratch").mkdir()
    (code / "scratch" / "big.bin").write_bytes(os.urandom(1 << 20))

    done = run_orch("submit", str(code / "job.yaml"), "--set", "name=no-ray-client", "--set", "config.epochs=2",
                    "--wait", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    view = json.loads(done.stdout)
    assert view["state"] == JobState.SUCCEEDED and "Traceback" not in done.stderr, done.stdout + done.stderr
    for args in (("status", view["job"], "--json"), ("logs", view["job"]), ("list", "--json"),
                 ("cancel", view["job"], "--json")):
        read = run_orch(*args, env=env)
        assert read.returncode == 0, (args, read.stdout + read.stderr)
    assert json.loads(run_orch("status", view["job"], "--json", env=env).stdout)["metrics"]
