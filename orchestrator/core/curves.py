"""A job's training curve: the numbers of its reports, as TensorBoard scalars and as the
series `orch status` and `orch results` draw.

Both read the same reports (a loop's ``ray.train.report`` dicts): the runners write each
one to TensorBoard event files as it is made (``scalars``, at ``step``), and the client
picks one metric's values out of the report events the job's log keeps (``curve``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

# A report's own position, when it says: a loop reporting every training step names the step,
# one reporting per epoch the epoch. A resumed run continues them, so its points land in place.
STEP_KEYS = ("step", "epoch")


def scalars(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The report's numbers as TensorBoard tags: nested dicts flatten to ``a/b`` (as Ray
    Tune's logger does); text, booleans and lists are not scalars and are left out."""
    found: dict[str, float] = {}
    for key, value in report.items():
        tag = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(scalars(value, f"{tag}/"))
        elif _number(value):
            found[tag] = float(value)
    return found


def step(report: dict[str, Any], ordinal: int) -> int:
    """Where the report goes on TensorBoard's x axis: its ``step`` or ``epoch`` when it has an
    integer one, else ``ordinal`` (its number in the run: 1, 2, ...)."""
    for key in STEP_KEYS:
        value = report.get(key)
        if _finite(value) and float(value).is_integer():
            return int(value)
    return ordinal


def curve(events: list[dict[str, Any]], metric: str | None, mode: str = "min",
          sweep: bool = False) -> dict[str, Any] | None:
    """``{"metric", "values", "trial_id"}``: ``metric``'s value in each report event, every
    attempt's in order (None where it was not a finite number: a NaN loss shows as a gap).
    For a sweep, the trial whose latest report is best by ``mode`` (the rule `best_trial`
    follows), its id in ``trial_id``. None when no report has the metric."""
    if not metric:
        return None
    by_trial = _series(events, metric)
    if sweep:
        ranked = [trial for trial, values in by_trial.items() if trial and _finite(values[-1])]
        if not ranked:
            return None
        pick = max if mode == "max" else min
        best = pick(ranked, key=lambda trial: by_trial[trial][-1])
        return {"metric": metric, "values": by_trial[best], "trial_id": best}
    values = by_trial.get(None)
    return {"metric": metric, "values": values, "trial_id": None} if values else None


def trial_curve(events: list[dict[str, Any]], metric: str, trial_id: str) -> dict[str, Any]:
    """One sweep trial's curve, shaped as ``curve``'s (its values empty when it never reported ``metric``)."""
    return {"metric": metric, "values": _series(events, metric).get(trial_id, []), "trial_id": trial_id}


def _series(events: list[dict[str, Any]], metric: str) -> dict[str | None, list[float | None]]:
    """``metric``'s values by trial (None: a job's own reports), non-finite ones as None."""
    by_trial: dict[str | None, list[float | None]] = {}
    for event in events:
        metrics = event.get("metrics") or {}
        if event.get("event") == "report" and metric in metrics:
            value = metrics[metric]
            by_trial.setdefault(event.get("trial_id"), []).append(float(value) if _finite(value) else None)
    return by_trial


def _number(value: Any) -> bool:
    """A real number, numpy's included (they register as ``numbers.Real``); not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)
