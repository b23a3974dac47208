"""Runtime estimates of stored jobs, from the job table's history (the control plane serves them;
`orch list` and `status` read them from the table themselves while no cluster runs).

The rules are `core.estimate`'s; this module turns stored rows into its plain inputs. A past
run is a SUCCEEDED job's running time summed over its attempts (a resumed job's attempts
together did its work), measured from the history the control plane writes by its clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from orchestrator.core import estimate
from orchestrator.core.lifecycle import JobState, running_s

if TYPE_CHECKING:  # job_table, which reads the rows, asks this module for their estimates
    from orchestrator.adapters.job_table import JobRow

Runs = dict[str, list[estimate.PastRun]]  # by job name, oldest first


def past_runs(rows: Iterable[JobRow]) -> Runs:
    """The SUCCEEDED jobs among ``rows`` as past runs, by name, in the order they ended."""
    done = sorted((r for r in rows if r.state == JobState.SUCCEEDED and r.plan and r.ended_at),
                  key=lambda r: r.ended_at)
    runs: Runs = {}
    for row in done:
        run = estimate.past_run(row.spec, row.plan.record, running_s(row.history, row.ended_at))
        runs.setdefault(row.name, []).append(run)
    return runs


def estimates(rows: Iterable[JobRow], runs: Runs) -> dict[str, dict[str, Any]]:
    """Job id -> the ``estimate`` member of its status and list JSON. Jobs alike (a name submitted
    again and again, with the same plan and hints) are estimated once: `orch list` of a thousand
    jobs stays fast."""
    known: dict[estimate.Target, dict[str, Any]] = {}
    found = {}
    for row in rows:
        target = estimate.target_of(row.spec, row.plan.record if row.plan else None)
        if target not in known:
            known[target] = estimate.to_json(estimate.estimate(target, runs.get(target.name, [])))
        found[row.id] = dict(known[target])
    return found
