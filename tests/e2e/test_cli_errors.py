"""Bad input exits 2 with one clear message, no traceback, and creates nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_orch

INVALID = REPO / "tests" / "data" / "invalid"


def _expected() -> list[tuple[str, str]]:
    rows = []
    for line in (INVALID / "expected.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, needle = line.split("\t", 1)
            rows.append((name, needle))
    return rows


@pytest.mark.parametrize("name,needle", _expected())
def test_validate_rejects_invalid_spec(name, needle, orch_home):
    done = run_orch("validate", str(INVALID / name))
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.ray
def test_submit_of_invalid_specs_creates_nothing(local_cluster, orch_home):
    from orchestrator.client import api

    before_jobs = len(api.list_jobs())
    before_files = sorted(p for p in Path(orch_home).rglob("*") if "logs" not in p.parts)
    for name, needle in _expected():
        done = run_orch("submit", str(INVALID / name))
        assert done.returncode == 2, (name, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(api.list_jobs()) == before_jobs
    assert sorted(p for p in Path(orch_home).rglob("*") if "logs" not in p.parts) == before_files


@pytest.mark.ray
def test_infeasible_job_is_rejected_at_submit_with_reason(local_cluster):
    done = run_orch("submit", "jobs/digits/torch-mlp.yaml", "--set", "resources.accelerator=A100:1")
    assert done.returncode == 2
    assert "A100" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.ray
def test_up_with_another_cluster_file_while_one_is_up_starts_nothing(local_cluster):
    done = run_orch("up", "--cluster", "cluster/mixed-sim.yaml")
    assert done.returncode == 2 and "`orch down` first" in done.stderr, done.stdout + done.stderr


def test_help_imports_neither_ray_nor_frameworks_nor_tensorboard():
    code = ("import sys; from orchestrator.cli.commands import app; "
            "from typer.testing import CliRunner; CliRunner().invoke(app, ['--help']); "
            "bad = [m for m in ('ray', 'torch', 'tensorflow', 'tensorboard', 'tensorboardX') if m in sys.modules]; "
            "print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_unknown_job_exits_2_without_cluster_traceback(orch_home):
    done = run_orch("status", "no-such-job", env={"ORCH_ADDRESS": "http://127.0.0.1:9"})
    assert done.returncode == 3
    assert "cannot reach" in done.stderr and "Traceback" not in done.stderr
