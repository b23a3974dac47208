"""The job spec's words that code reading a spec without its models needs too: the patterns
names must match, the ``job:`` source of a checkpoint, a default a spec's JSON may leave out.

``spec.py`` builds the pydantic models from these; a client that only reads a spec's JSON
(`orch submit` hands validation to the control plane) imports them from here, not pydantic.
"""

from __future__ import annotations

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
# a variable of the submitter's environment (any case: http_proxy is common)
SUBMITTER_ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# FILE.py:FUNC (a path relative to working_dir) or package.module:FUNC
ENTRYPOINT_PATTERN = r"^(?:[A-Za-z0-9_.\-/]+\.py|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):[A-Za-z_][A-Za-z0-9_]*$"

JOB_SOURCE = "job:"  # init_from / predict.model: an earlier job's checkpoint
PRECISION_DEFAULT = "auto"  # orch picks by the hardware
