"""The control plane's answers about durations: its jobs' runtime estimates, from the store's history.

The rules are `core.estimate`'s; this module turns stored rows into its plain inputs. A past
run is a SUCCEEDED job's running time summed over its attempts (a resumed job's attempts
together did its work), measured from the history the control plane writes by its clock.
"""

from __future__ import annotations

from typing import Any, Iterable

from orchestrator.control.store import JobRow
from orchestrator.core import estimate
from orchestrator.core.lifecycle import running_s
from orchestrator.core.spec import JobSpec

Runs = dict[str, list[estimate.PastRun]]  # by job name, oldest first


def past_runs(rows: Iterable[JobRow]) -> Runs:
    """The SUCCEEDED jobs among ``rows`` as past runs, by name, in the order they ended."""
    done = sorted((r for r in rows if r.state == "SUCCEEDED" and r.plan and r.ended_at), key=lambda r: r.ended_at)
    runs: Runs = {}
    for row in done:
        run = estimate.past_run(JobSpec.model_validate(row.spec), row.plan, running_s(row.history, row.ended_at))
        runs.setdefault(row.name, []).append(run)
    return runs


def estimates(rows: Iterable[JobRow], runs: Runs) -> dict[str, dict[str, Any]]:
    """Job id -> the ``estimate`` member of its status and list JSON. Jobs alike (a name submitted
    again and again, with the same plan and hints) are estimated once: `orch list` of a thousand
    jobs stays fast."""
    known: dict[estimate.Target, dict[str, Any]] = {}
    found = {}
    for row in rows:
        target = estimate.target_of(JobSpec.model_validate(row.spec), row.plan)
        if target not in known:
            known[target] = estimate.to_json(estimate.estimate(target, runs.get(target.name, [])))
        found[row.id] = dict(known[target])
    return found
