"""orch: run training jobs on a Ray cluster of CPUs, GPUs and TPUs.

The library API (the CLI is a thin shell over it)::

    import orchestrator
    spec = orchestrator.load_spec("jobs/digits/torch-mlp.yaml")
    job = orchestrator.submit(spec)
    view = orchestrator.wait(job["job"])

Names are imported on first use, so importing orch (and `orch --help`)
never imports Ray or a framework, and importing it changes nothing in
``os.environ``: entry points set the cluster token's env (``auth.apply_to_environ``).

The package is in rooms by role: ``core`` (pure decisions), ``load`` (files to
models), ``adapters`` (Ray, disk, network), ``control`` (the control plane),
``runners`` (a job's driver), ``client`` (this API), ``cli``; each room's
``__init__`` says what it may import, and tests/unit/test_import_boundary.py holds it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_spec": "orchestrator.load.spec",
    "submit": "orchestrator.client.api",
    "plan": "orchestrator.client.api",
    "wait": "orchestrator.client.api",
    "status": "orchestrator.client.api",
    "list_jobs": "orchestrator.client.api",
    "logs": "orchestrator.client.api",
    "cancel": "orchestrator.client.api",
    "results": "orchestrator.client.api",
    "tensorboard": "orchestrator.client.api",
    "up": "orchestrator.client.api",
    "down": "orchestrator.client.api",
    "JobSpec": "orchestrator.core.spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
