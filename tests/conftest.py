"""One local Ray cluster for the whole test session, started by orch itself.

ORCH_HOME points at a private folder so the suite never touches a user's
cluster, and every subprocess (`orch ...`) inherits it. Only the processes
this session started are stopped, by process group.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import orchestrator  # noqa: F401  first: it sets Ray's auth mode before any test module imports Ray

REPO = Path(__file__).resolve().parents[1]
ORCH = str(Path(sys.executable).with_name("orch"))


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
    from orchestrator import cluster

    info = cluster.up(progress=lambda _: None)
    yield info
    cluster.down(progress=lambda _: None)


def run_orch(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `orch` CLI in a subprocess, as a user would."""
    return subprocess.run([ORCH, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})
