"""The driver of one orch job inside its Ray Job: ``python -m orchestrator.entry``.

The submitting side puts the validated spec and the plan's Ray Train settings
into ``ORCH_JOB``; this process only builds the runner and runs it.
"""

from __future__ import annotations

import json
import os
import sys

from orchestrator import events

PAYLOAD_ENV = "ORCH_JOB"
TEMPFAIL = 75  # sysexits' EX_TEMPFAIL: lost to the infrastructure, worth another attempt


def main() -> int:
    payload = json.loads(os.environ[PAYLOAD_ENV])
    payload["secrets"] = _take_secrets(payload.get("secrets_file"))
    from orchestrator.runners import train

    runner = train
    if payload["spec"].get("sweep"):
        from orchestrator.runners import tune as runner  # Tune loads only for sweeps
    elif payload["spec"].get("predict"):
        from orchestrator.runners import predict as runner
    events.emit("start", job=payload["job"], accelerator=payload["plan"].get("accelerator"))
    try:
        result = runner.run(payload)
    except train.TrainingFailed as failure:
        events.emit("failed", error=str(failure))
        return 1
    except train.InfrastructureLost as lost:
        events.emit("lost", error=str(lost))
        return TEMPFAIL  # the control plane requeues it, like a killed driver
    events.emit("result", **result)
    return 0


def _take_secrets(path: str | None) -> dict[str, str]:
    """Read the job's secret env values and delete the file: they live on only in this process."""
    if not path:
        return {}
    try:
        with open(path) as handle:
            secrets = json.load(handle)
    except FileNotFoundError:  # a relaunch of this attempt: the first driver took them
        events.emit("warning", message="the job's secret env values were already taken; workers run without them")
        return {}
    os.unlink(path)
    return secrets


if __name__ == "__main__":
    sys.exit(main())
