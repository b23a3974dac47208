"""``--set KEY=VALUE`` overrides of a job spec, each VALUE read as YAML by the hardened reader."""

from __future__ import annotations

from typing import Any

from orchestrator.core.errors import SpecError
from orchestrator.load.messages import OPTION, Report, field_line
from orchestrator.load.reader import Builder, compose, measure


def apply_override(data: dict[str, Any], positions: dict, item: str) -> None:
    """Set one ``--set KEY=VALUE`` in ``data``; later problems with it point at the option."""
    where = OPTION + item
    key, sep, text = item.partition("=")
    parts = tuple(key.strip().split("."))
    if not sep or not all(parts):
        raise SpecError([f"{where}: write KEY=VALUE with a dotted KEY, such as resources.workers=4"])
    report = Report()
    node = compose(text, where)
    if node is not None:
        measure(node, where)
    value = None if node is None else Builder(where, report).build(node, parts)
    if report.problems:
        raise SpecError(report.problems, details=report.details)
    target = data
    for depth, part in enumerate(parts[:-1]):
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            message = f"is not a mapping, so it has no field {parts[depth + 1]!r}"
            raise SpecError([field_line(where, parts[: depth + 1], message)])
        positions.setdefault(parts[: depth + 1], (where, where))
    target[parts[-1]] = value
    for stale in [p for p in positions if p[: len(parts)] == parts]:
        del positions[stale]
    positions[parts] = (where, where)
