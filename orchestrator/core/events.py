"""Structured progress lines in a job's log: how a driver tells the CLI what happened.

The driver (and the Ray Train controller, through a callback) prints one
``::orch:: {json}`` line per event (``runners.emit``). The CLI reads them back from the job's
logs through the Jobs API, so the same path works for local and remote
clusters and nothing about a job lives only in a process's memory.
"""

from __future__ import annotations

import json
import re
from typing import Any

MARK = "::orch::"
_LINE = re.compile(re.escape(MARK) + r" (\{.*\})\s*$")


def parse(log_text: str) -> list[dict[str, Any]]:
    """Every event in a log, in order; lines that are not events are skipped."""
    found = []
    for line in log_text.splitlines():
        match = _LINE.search(line)
        if match:
            try:
                found.append(json.loads(match.group(1)))
            except json.JSONDecodeError:
                continue  # a line cut by the log reader; the next report supersedes it
    return found


def tagged(by_attempt: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The events of each attempt, attempts in order, each event tagged with its ``attempt``."""
    return [{**e, "attempt": attempt} for attempt in sorted(by_attempt) for e in by_attempt[attempt]]


def last(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((e for e in reversed(events) if e.get("event") == kind), None)


def latest_metrics(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest reported metrics; a predict job reports once, in its result."""
    report = last(events, "report") or last(events, "result")
    return report.get("metrics") if report else None


def worker_restarts(events: list[dict[str, Any]]) -> int:
    """Worker-group failures Ray Train restarted from (events tagged with their ``attempt``):
    in an attempt that ended failed, its last failure ended it instead."""
    by_attempt: dict[Any, list[str]] = {}
    for e in events:
        if e.get("event") in ("worker_failure", "failed"):
            by_attempt.setdefault(e.get("attempt"), []).append(e["event"])
    return sum(kinds.count("worker_failure") - (kinds[-1] == "failed" and "worker_failure" in kinds)
               for kinds in by_attempt.values())


def summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What `orch list` shows of a job's events without reading them: metrics and restarts."""
    return {"metrics": latest_metrics(events), "worker_restarts": worker_restarts(events)}
