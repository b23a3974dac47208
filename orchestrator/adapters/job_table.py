"""The job table's layout and its read side: SQLite under orch's home (``control.db``).

The one place that knows the table's columns. The control plane writes it
(``control/store.py`` builds on ``JobTable``) and serves these reads over
HTTP; with the cluster down, the client reads the same file here, read only
(``KeptJobs``), so `orch list/status/results/logs` still answer. Secrets are
in the file too: nothing here reads them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from orchestrator.adapters import durations
from orchestrator.core.errors import JobNotFound
from orchestrator.core.launch import PlanRecord
from orchestrator.core.lifecycle import TERMINAL, JobState
from orchestrator.core.spec import JobSpec

DB_NAME = "control.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    queue TEXT NOT NULL,
    preemptible INTEGER NOT NULL,
    spec TEXT NOT NULL,
    request TEXT NOT NULL,
    plan TEXT,
    reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    ray_submission_id TEXT,
    preempt_requested_at REAL,
    history TEXT NOT NULL DEFAULT '[]',
    submitted_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs(name);
CREATE TABLE IF NOT EXISTS secrets (
    id TEXT PRIMARY KEY REFERENCES jobs(id),
    env TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT NOT NULL REFERENCES jobs(id),
    attempt INTEGER NOT NULL,
    events TEXT NOT NULL,
    log_tail TEXT NOT NULL,
    PRIMARY KEY (id, attempt)
);
CREATE TABLE IF NOT EXISTS summaries (
    id TEXT PRIMARY KEY REFERENCES jobs(id),
    summary TEXT NOT NULL
);
"""
JSON_COLUMNS = ("spec", "request", "plan", "history")


COLUMNS = ("seq", "id", "name", "state", "priority", "queue", "preemptible", "spec", "request", "plan", "reason",
           "attempt", "ray_submission_id", "preempt_requested_at", "history", "submitted_at", "started_at",
           "ended_at", "updated_at")  # the jobs table's, in the order clients get them


@dataclass
class JobRow:
    """One job as stored, read once: ``spec`` validated (``spec_json`` as submitted, what clients
    and the driver get), ``plan`` typed, ``request`` and ``history`` parsed JSON."""

    seq: int
    id: str
    name: str
    state: JobState
    priority: int
    queue: str
    preemptible: bool
    spec: JobSpec
    request: dict[str, Any]
    plan: PlanRecord | None
    reason: str | None
    attempt: int
    ray_submission_id: str | None
    preempt_requested_at: float | None
    history: list[dict[str, Any]]
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    updated_at: float
    spec_json: dict[str, Any]


def row_json(row: JobRow) -> dict[str, Any]:
    """A job as clients get it: the request only by its code's package (its env stays on the head)."""
    data = {column: getattr(row, column) for column in COLUMNS}
    data.update(state=row.state.value, spec=row.spec_json, plan=row.plan.record if row.plan else None,
                request={"runtime_env": {"working_dir": row.request.get("runtime_env", {}).get("working_dir")}})
    return data


class JobTable:
    """The reads of the job table over one connection, one lock (a writer's reads nest in its writes)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # The validated specs of the jobs that have not ended, by id: a spec never changes once
        # stored, and the control loop reads every queued and running job each step.
        self._specs: dict[str, JobSpec] = {}

    def _parse(self, row: sqlite3.Row) -> JobRow:
        """A stored row as a ``JobRow``, its spec validated once while the job lives."""
        data = dict(row)
        for key in JSON_COLUMNS:
            data[key] = json.loads(data[key]) if data[key] else None
        state, spec = JobState(data["state"]), self._specs.get(data["id"])
        if spec is None:
            spec = JobSpec.model_validate(data["spec"])
            if not state.is_terminal:
                self._specs[data["id"]] = spec
        elif state.is_terminal:  # ended since: the control loop reads it no more
            self._specs.pop(data["id"], None)
        plan = PlanRecord.read(data["plan"]) if data["plan"] is not None else None
        return JobRow(**{**data, "state": state, "preemptible": bool(data["preemptible"]), "spec": spec,
                         "plan": plan, "spec_json": data["spec"]})

    def summaries(self) -> dict[str, dict]:
        with self._lock:
            rows = self._db.execute("SELECT id, summary FROM summaries").fetchall()
        return {row["id"]: json.loads(row["summary"]) for row in rows}

    def kept_events(self, job_id: str) -> dict[int, list[dict]]:
        """The events of a job's ended attempts, by attempt."""
        with self._lock:
            rows = self._db.execute("SELECT attempt, events FROM attempts WHERE id = ?", (job_id,)).fetchall()
        return {row["attempt"]: json.loads(row["events"]) for row in rows}

    def kept_log(self, job_id: str, attempt: int) -> str | None:
        """The end of an ended attempt's log; None when none was kept."""
        with self._lock:
            row = self._db.execute("SELECT log_tail FROM attempts WHERE id = ? AND attempt = ?",
                                   (job_id, attempt)).fetchone()
        return row["log_tail"] if row else None

    def get(self, job_id: str) -> JobRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._parse(row) if row else None

    def find(self, job_or_name: str, unfinished_first: bool = False) -> JobRow | None:
        """A job by id, else the latest job of that name (with ``unfinished_first``, the latest
        one that has not ended, if any: what `orch cancel NAME` means)."""
        found = self.get(job_or_name)
        if found:
            return found
        ended = ",".join("?" * len(TERMINAL))
        order = f"state IN ({ended}), seq DESC" if unfinished_first else "seq DESC"
        with self._lock:
            row = self._db.execute(f"SELECT * FROM jobs WHERE name = ? ORDER BY {order} LIMIT 1",
                                   (job_or_name, *(TERMINAL if unfinished_first else ()))).fetchone()
        return self._parse(row) if row else None

    def all(self, states: Iterable[str] | None = None, name: str | None = None) -> list[JobRow]:
        """The jobs in ``states`` (None: any), of ``name`` only when given, oldest first."""
        where, args = [], ()
        if states is not None:
            states = tuple(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            args = states
        if name is not None:
            where.append("name = ?")
            args = (*args, name)
        query = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [self._parse(r) for r in rows]

    def count_queued(self, min_priority: int) -> int:
        """How many QUEUED jobs have at least ``min_priority`` (a plan's queue position): counted by
        SQLite, not parsed row by row, since every submit asks while scripts queue many jobs."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'QUEUED' AND priority >= ?",
                                    (min_priority,)).fetchone()[0]

    # ---- the shapes the control plane serves (GET /jobs, /jobs/ID, /jobs/ID/log) -------------

    def jobs_json(self) -> list[dict[str, Any]]:
        """Every job with the summary kept of its ended attempts and its runtime estimate (what
        `orch list` shows)."""
        summaries, rows = self.summaries(), self.all()
        estimates = durations.estimates(rows, durations.past_runs(rows))
        return [{**row_json(row), "summary": summaries.get(row.id), "estimate": estimates[row.id]} for row in rows]

    def job_json(self, row: JobRow) -> dict[str, Any]:
        """One job with its attempts' kept events and its runtime estimate (`orch status`)."""
        runs = durations.past_runs(self.all([JobState.SUCCEEDED], name=row.name))
        [found] = durations.estimates([row], runs).values()
        return {**row_json(row), "kept_events": self.kept_events(row.id), "estimate": found}

    def log_json(self, row: JobRow) -> dict[str, Any]:
        return {"attempt": row.attempt, "log": self.kept_log(row.id, row.attempt)}


class KeptJobs:
    """What orch kept of its jobs, read straight from the file while no control plane runs:
    the control plane client's reads (``list``, ``get``, ``kept_log``), in its shapes."""

    def __init__(self, path: Path):
        self.path = path
        # mode=ro: this reader never writes, creates or migrates the table the control plane owns.
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        self.table = JobTable(sqlite3.connect(uri, uri=True, check_same_thread=False))

    @classmethod
    def open(cls, home: Path) -> KeptJobs | None:
        """The job table under ``home``; None when orch never kept one there."""
        path = home / DB_NAME
        return cls(path) if path.is_file() else None

    def list(self) -> list[dict]:
        return self.table.jobs_json()

    def get(self, job: str) -> dict:
        return self.table.job_json(self._find(job))

    def kept_log(self, job: str) -> str | None:
        return self.table.log_json(self._find(job))["log"]

    def _find(self, job: str) -> JobRow:
        found = self.table.find(job)
        if found is None:
            raise JobNotFound(job)
        return found
