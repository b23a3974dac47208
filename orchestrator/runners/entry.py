"""The driver of one orch job inside its Ray Job: ``python -m orchestrator.runners.entry``.

The submitting side puts the validated spec and the plan's Ray Train settings
into ``ORCH_JOB``; this process only builds the runner and runs it. Its argv
(the job id, after the module, for people reading the Ray dashboard) is never read.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from orchestrator.adapters import auth
from orchestrator.core.protocol import PAYLOAD_ENV, TEMPFAIL
from orchestrator.runners.emit import emit

RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for its driver


def main() -> int:
    auth.apply_to_environ()  # before Ray loads: its clients read the auth mode once
    # The job's unpacked working_dir, read first: runners never look at the current directory
    # once they are connected to Ray (a node unpacking the package anew could replace it).
    code = Path.cwd()
    payload = json.loads(os.environ[PAYLOAD_ENV])
    if _stopped_while_starting():
        emit("warning", message="Ray stopped this job while its driver was starting: nothing runs")
        return 0
    payload["secrets"] = _take_secrets(payload.get("secrets_file"))
    from orchestrator.runners import train

    runner = train
    if payload["spec"].get("sweep"):
        from orchestrator.runners import tune as runner  # Tune loads only for sweeps
    elif payload["spec"].get("predict"):
        from orchestrator.runners import predict as runner
    emit("start", job=payload["job"], accelerator=payload["plan"].get("accelerator"))
    try:
        result = runner.run(payload, code)
    except train.TrainingFailed as failure:
        emit("failed", error=str(failure))
        return 1
    except train.InfrastructureLost as lost:
        emit("lost", error=str(lost))
        return TEMPFAIL  # the control plane requeues it, like a killed driver
    emit("result", **result)
    return 0


def _stopped_while_starting() -> bool:
    """Whether Ray already says this job is STOPPED. A stop that lands a moment after Ray
    started the driver's process can miss the driver (seen with Ray 2.60: Ray recorded
    STOPPED, the driver trained on for 17 minutes, holding what orch gave the next job)."""
    config = json.loads(os.environ.get(RAY_JOB_CONFIG_ENV) or "{}")
    submission_id = (config.get("metadata") or {}).get("job_submission_id")
    if not submission_id:
        return False
    from ray.job_submission import JobStatus

    return _status_in_ray(submission_id) == JobStatus.STOPPED


def _status_in_ray(submission_id: str) -> str | None:
    """The Ray Job's status as its supervisor recorded it in the GCS (``RAY_ADDRESS``, set by
    the supervisor). A bare GCS client, not ``ray.init``: connecting the driver is the
    runner's business, after it has read the job's code from the working directory."""
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        return None
    from ray._private.ray_constants import KV_NAMESPACE_JOB
    from ray._raylet import GcsClient
    from ray.dashboard.modules.job.common import JobInfoStorageClient

    key = JobInfoStorageClient.JOB_DATA_KEY.format(job_id=submission_id).encode()
    info = GcsClient(address=address).internal_kv_get(key, KV_NAMESPACE_JOB, timeout=30)
    return json.loads(info).get("status") if info else None


def _take_secrets(path: str | None) -> dict[str, str]:
    """Read the job's secret env values and delete the file: they live on only in this process."""
    if not path:
        return {}
    try:
        with open(path) as handle:
            secrets = json.load(handle)
    except FileNotFoundError:  # a relaunch of this attempt: the first driver took them
        emit("warning", message="the job's secret env values were already taken; workers run without them")
        return {}
    os.unlink(path)
    return secrets


if __name__ == "__main__":
    sys.exit(main())
