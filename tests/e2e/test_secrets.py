"""Secret env values reach the workers and nothing else: not Ray's job record, not orch's output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, record_figure, run_orch

pytestmark = pytest.mark.ray

SECRET = "orch-test-secret-7f3a9c1e"


def test_secret_env_reaches_workers_and_no_api_shows_it(local_cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    spec = {"name": "secret-probe", "entrypoint": "where.py:train_loop",
            "working_dir": str(REPO / "tests/data/placement"), "config": {"out": str(out), "probe": "API_KEY"},
            "resources": {"workers": 1, "memory": "1GiB"},
            "env": {"API_KEY": {"from_env": "ORCH_TEST_API_KEY", "secret": True}, "PLAIN": "shown"}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    env = {"ORCH_TEST_API_KEY": SECRET}

    done = run_orch("submit", str(path), "--wait", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)["job"]
    seen = json.loads(next(out.glob("*rank-*.json")).read_text())
    assert seen["probe_sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()

    from orchestrator.adapters.http import http
    from orchestrator.adapters.jobs import JobsClient

    shown = [done.stdout, done.stderr, json.dumps(JobsClient(local_cluster).list()),
             json.dumps(http(local_cluster.dashboard_url, f"/api/jobs/{job}"))]
    for command in (["status", job, "--json"], ["list", "--json"], ["results", job, "--json"], ["logs", job]):
        shown.append(run_orch(*command, env=env).stdout)
    leaked = sum(SECRET in text for text in shown)
    record_figure("secrets: places showing a secret value (CLI output, Jobs API job record, logs)", leaked,
                  f"0 of {len(shown)}", leaked == 0)
    assert leaked == 0
    assert '"PLAIN": "shown"' in shown[3]  # plain env stays in the runtime env, as before
    assert not list(Path(local_cluster.storage, ".orch-secrets").glob("*.json"))  # the driver took its file
    store = [p for p in Path(local_cluster.storage).parent.glob("control.db*") if p.is_file()]
    assert store and not any(SECRET.encode() in p.read_bytes() for p in store)  # the ended job's secret is gone


def test_missing_secret_variable_exits_2_naming_the_field(local_cluster, tmp_path):
    spec = {"name": "secret-missing", "entrypoint": "where.py:train_loop",
            "working_dir": str(REPO / "tests/data/placement"),
            "env": {"API_KEY": {"from_env": "ORCH_TEST_UNSET_VARIABLE", "secret": True}}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    done = run_orch("submit", str(path))
    assert done.returncode == 2 and "env.API_KEY.from_env" in done.stderr and "Traceback" not in done.stderr


def test_secret_env_reaches_predict_workers(local_cluster, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"0")
    np.savez(tmp_path / "rows.npz", x=np.arange(10.0))
    spec = {"name": "secret-predict", "entrypoint": "probe_predict.py:Predictor",
            "working_dir": str(REPO / "tests/data/placement"), "config": {"probe": "API_KEY"},
            "resources": {"workers": 1, "cpus": 1, "memory": "1GiB"},
            "env": {"API_KEY": {"from_env": "ORCH_TEST_API_KEY", "secret": True}},
            "predict": {"model": str(model), "input": str(tmp_path / "rows.npz"), "output": "out.npz"}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    done = run_orch("submit", str(path), "--wait", "--json", env={"ORCH_TEST_API_KEY": SECRET})
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)["job"]
    output = json.loads(run_orch("results", job, "--json").stdout)["output"]
    probes = set(np.load(output)["probe"])
    assert probes == {int(hashlib.sha256(SECRET.encode()).hexdigest()[:12], 16)}

    from orchestrator.adapters.jobs import JobsClient

    assert SECRET not in json.dumps(JobsClient(local_cluster).get(job)) + done.stdout
