"""A job's code reaches Ray whatever happens around it (issue 22): a package Ray lost
before a launch is put back. (Jobs sharing a working_dir submitted at once:
tests/reliability/test_shared_working_dir.py, in `make soak`.)"""

from __future__ import annotations

import shutil
import time
import uuid

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.ray
CODE = REPO / "tests" / "data" / "resumable"  # loop.py: 6 epochs, a checkpoint each; job.yaml


def test_a_package_ray_lost_before_the_launch_is_put_back_and_the_job_succeeds(local_cluster, tmp_path):
    """Ray's GCS loses the job's package between orch putting it back and Ray setting up the
    job (deleted here through Ray's own GCS client, as Ray's own garbage collection would):
    orch relaunches the job with its package put back, and says so in its history."""
    from ray._raylet import GcsClient

    from orchestrator.adapters import cluster, packages
    from orchestrator.adapters.jobs import JobsClient
    from orchestrator.control.loop import Control
    from orchestrator.control.store import Store
    from orchestrator.core.lifecycle import CODE_NOT_SET_UP, JobState
    from orchestrator.load.spec import load_spec

    code = tmp_path / "code"
    shutil.copytree(CODE, code)
    (code / "stamp.txt").write_text(uuid.uuid4().hex)  # a package of its own, not shared with other tests
    spec = load_spec(str(code / "job.yaml"), ["name=lost-code", "config.epochs=1"])
    gcs = GcsClient(address=local_cluster.gcs_address)

    class LosesThePackageOnce(JobsClient):
        lost: list[str] = []

        def submit(self, *, entrypoint, submission_id, runtime_env, metadata):
            if not self.lost:
                self.lost.append(runtime_env["working_dir"])
                assert gcs.internal_kv_del(runtime_env["working_dir"].encode(), False, namespace=None) == 1
            return super().submit(entrypoint=entrypoint, submission_id=submission_id,
                                  runtime_env=runtime_env, metadata=metadata)

    control = Control(Store(tmp_path / "control.db"), LosesThePackageOnce(local_cluster),
                      lambda: cluster.live_snapshot(local_cluster), str(tmp_path / "storage"))
    uri = packages.package_working_dir(str(code), lambda _: False,
                                       lambda name, data: control.packages.keep(name, _Body(data), len(data)))
    job = f"lost-code-{uuid.uuid4().hex[:6]}"
    control.submit({"job": job, "spec": spec.model_dump(mode="json"), "secrets": None,
                    "request": {"runtime_env": {"working_dir": uri, "env_vars": {}}}})
    deadline = time.monotonic() + 300
    while (row := control.store.get(job)).state not in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        assert time.monotonic() < deadline, row
        control.step()
        time.sleep(1)
    control.store.close()
    assert LosesThePackageOnce.lost == [uri]
    assert row.state == JobState.SUCCEEDED, row.reason
    relaunched = [h["reason"] for h in row.history if (h["reason"] or "").startswith(CODE_NOT_SET_UP)]
    assert len(relaunched) == 1 and "launch 1 of 3" in relaunched[0] and row.attempt == 2


class _Body:
    """The bytes of a package as the control plane reads an upload."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def read(self, size: int) -> bytes:
        chunk = self.data[self.at:self.at + size]
        self.at += len(chunk)
        return chunk
