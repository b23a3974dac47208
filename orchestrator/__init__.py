"""orch: run training jobs on a Ray cluster of CPUs, GPUs and TPUs.

The library API (the CLI is a thin shell over it)::

    import orchestrator
    spec = orchestrator.load_spec("jobs/digits/torch-mlp.yaml")
    job = orchestrator.submit(spec)
    view = orchestrator.wait(job["job"])

Names are imported on first use, so importing orch (and `orch --help`)
never imports Ray or a framework.
"""

from __future__ import annotations

import importlib

from orchestrator import auth as _auth

# Ray reads its auth mode once, when its first client starts: set it before
# anything in this process imports Ray, so every client orch makes sends the token.
_auth.apply_to_environ()

_EXPORTS = {
    "load_spec": "orchestrator.specload",
    "submit": "orchestrator.api",
    "plan": "orchestrator.api",
    "wait": "orchestrator.api",
    "status": "orchestrator.api",
    "list_jobs": "orchestrator.api",
    "logs": "orchestrator.api",
    "cancel": "orchestrator.api",
    "results": "orchestrator.api",
    "up": "orchestrator.cluster",
    "down": "orchestrator.cluster",
    "JobSpec": "orchestrator.spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
