"""A job's dependencies and its precision, end to end on the session's local cluster through
the `orch` CLI (issue 21, items 2 and 5): a plain Ray Train loop under ``precision: bf16``
sees bf16 activations in its forward pass (CPU autocast, no orch helper in its code); a job
with ``pip:`` of a package built here (no network) imports it, and its ``excludes`` never
reach the cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_orch, wait_until_ended

pytestmark = pytest.mark.ray

PLAIN_LOOP = '''
import torch
import ray.train


def train(config):
    layer = torch.nn.Linear(8, 4)
    out = layer(torch.randn(2, 8))  # no autocast here: orch's runner puts the loop under it
    ray.train.report({"epoch": 0, "activation_dtype": str(out.dtype), "weight_dtype": str(layer.weight.dtype)})
'''

IMPORTING_LOOP = '''
import os
import ray.train


def train(config):
    import orch_tiny  # installed by Ray from the job's pip: line, in the job's own virtualenv
    here = os.path.dirname(os.path.abspath(__file__))
    ray.train.report({"epoch": 0, "tiny_value": orch_tiny.VALUE,
                      "excluded_shipped": int(os.path.exists(os.path.join(here, "data", "raw.bin"))),
                      "kept_shipped": int(os.path.exists(os.path.join(here, "data", "kept.csv")))})
'''


def _submit_and_wait(spec: Path) -> tuple[str, dict]:
    done = run_orch("submit", str(spec), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)["job"]
    view = wait_until_ended(job, timeout=420)
    assert view["state"] == "SUCCEEDED", view["reason"]
    return job, view


def test_a_plain_loop_under_bf16_sees_bf16_activations(local_cluster, tmp_path):
    (tmp_path / "loop.py").write_text(PLAIN_LOOP)
    spec = tmp_path / "job.yaml"
    spec.write_text("name: plain-bf16\nentrypoint: loop.py:train\nprecision: bf16\n")
    job, view = _submit_and_wait(spec)
    assert view["metrics"]["activation_dtype"] == "torch.bfloat16"
    assert view["metrics"]["weight_dtype"] == "torch.float32"  # autocast, not a cast of the model
    assert (view["precision"], view["precision_applied_by"]) == ("bf16", "orch")
    shown = run_orch("status", job)
    assert "bf16 (orch's autocast)" in shown.stdout, shown.stdout


@pytest.fixture
def tiny_wheel(tmp_path) -> Path:
    """A one-module package built here into a wheel, offline (no index, no build isolation)."""
    source = tmp_path / "tiny"
    (source / "orch_tiny").mkdir(parents=True)
    (source / "orch_tiny" / "__init__.py").write_text("VALUE = 42\n")
    (source / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                           'build-backend = "setuptools.build_meta"\n'
                                           '[project]\nname = "orch-tiny"\nversion = "0.1"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp_path / "wheels"), str(source)], check=True, timeout=120)
    [wheel] = (tmp_path / "wheels").glob("orch_tiny-0.1-*.whl")
    return wheel


@pytest.fixture
def pip_envs():
    """Ray's pip virtualenvs made meanwhile, removed after the test: in a virtualenv Ray
    clones the whole environment (with torch and TensorFlow, GBs) for each pip list."""
    from orchestrator.adapters import cluster

    def made() -> set[Path]:
        return {path for root in Path(cluster.ray_temp_dir()).parent.glob(f"{cluster.ray_temp_dir().name}*")
                for path in root.glob("session_*/runtime_resources/pip/*")}

    before = made()
    yield
    for path in made() - before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.soak  # ~55 s to SUCCEEDED (Ray clones the 3.5 GB test virtualenv), ~12 s to remove it; `make soak`
def test_a_job_imports_a_package_from_its_pip_list_and_its_excludes_stay_home(local_cluster, tmp_path,
                                                                             tiny_wheel, pip_envs):
    code = tmp_path / "code"
    (code / "data").mkdir(parents=True)
    (code / "loop.py").write_text(IMPORTING_LOOP)
    (code / "data" / "raw.bin").write_bytes(b"\0" * 1024)
    (code / "data" / "kept.csv").write_text("a,b\n")
    spec = code / "job.yaml"
    spec.write_text(f"name: pip-local\nentrypoint: loop.py:train\npip: [{tiny_wheel}]\nexcludes: [data/*.bin]\n")
    started = time.monotonic()
    _, view = _submit_and_wait(spec)
    print(f"pip job: {time.monotonic() - started:.0f} s from submit to SUCCEEDED (Ray builds the job's virtualenv)")
    assert view["metrics"]["tiny_value"] == 42
    assert (view["metrics"]["excluded_shipped"], view["metrics"]["kept_shipped"]) == (0, 1)
