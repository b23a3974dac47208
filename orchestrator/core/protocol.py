"""Names both sides of a boundary share: env vars, exit codes, labels, resources, metadata keys.

The submitting side (client, control plane) and the job side (runners, job code) each
import them from here, so neither imports the other to agree on a name.
"""

from __future__ import annotations

import re

# Env vars the submitting side sets for the job's driver and workers.
PAYLOAD_ENV = "ORCH_JOB"  # the validated spec and the plan, as JSON, for the driver
PRECISION_ENV = "ORCH_PRECISION"
INIT_FROM_ENV = "ORCH_INIT_FROM"  # the checkpoint init_from (or predict.model) resolved to at submit

# How a driver's exit reads to the control plane.
TEMPFAIL = 75  # sysexits' EX_TEMPFAIL: lost to the infrastructure, worth another attempt

# The Ray Job request.
ENTRYPOINT = "python -m orchestrator.runners.entry"
META = "orch_"  # prefix of orch's keys in Ray job metadata

# Ray node labels and custom resources that `orch up` sets and the planner and drivers read.
NODE_LABEL = "orch.io/node"  # the cluster file's node name, e.g. a100-0
SIMULATED_LABEL = "orch.io/simulated"  # accelerators are declared, not real
DRIVER_RESOURCE = "orch_driver"  # slots for sweep trial drivers (DESIGN.md)

# Keras 3 breaks MultiWorkerMirroredStrategy under Ray; tf-keras with this flag
# works. It must be in the workers' runtime env before TF is imported, so it
# cannot be set inside the loop.
_WORKER_ENV = {
    "tensorflow": {"TF_USE_LEGACY_KERAS": "1"},
}


def worker_env(framework: str) -> dict[str, str]:
    """Env vars ``framework``'s workers need, as plain data: the submitting side puts them
    in the job's runtime env without importing the framework."""
    return dict(_WORKER_ENV.get(framework, {}))


def type_name(key: str) -> str:
    """A launcher node type or KubeRay group as an orch node name: ``GPU_Pool`` -> ``gpu-pool``.

    Nodes of the type are named ``<type_name>-<index>`` in the snapshot; Ray labels the
    live nodes it launches with the type as configured (``ray.io/node-group``).
    """
    return re.sub(r"[^a-z0-9-]+", "-", str(key).lower()).strip("-")
