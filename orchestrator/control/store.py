"""The control plane's durable job table: SQLite in WAL mode on the head node.

Every fact about a job lives here, written before it is acted on, so killing
the control plane (or `orch down` then `orch up`) loses nothing: on restart
it reads the table and reconciles with Ray. Inserts are idempotent by job id,
so a client that retries a submit never creates a job twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from orchestrator.core.lifecycle import TERMINAL, check_transition

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


def _private(path: Path) -> None:
    """The job store (it holds queued jobs' secrets) readable by this user only; SQLite gives
    its -wal and -shm files the database file's mode."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            os.chmod(name, 0o600)


log = logging.getLogger(__name__)
_JSON_COLUMNS = ("spec", "request", "plan", "history")


@dataclass
class JobRow:
    """One job as stored; ``spec``, ``request`` and ``plan`` are parsed JSON."""

    seq: int
    id: str
    name: str
    state: str
    priority: int
    queue: str
    preemptible: bool
    spec: dict[str, Any]
    request: dict[str, Any]
    plan: dict[str, Any] | None
    reason: str | None
    attempt: int
    ray_submission_id: str | None
    preempt_requested_at: float | None
    history: list[dict[str, Any]]
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    updated_at: float


class Store:
    """Thread-safe access to the job table (one connection, one lock)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.folder = path.parent  # the head-node folder of orch's state (job packages live there too)
        self._lock = threading.RLock()  # transition() nests update()
        _private(path)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA secure_delete=ON")  # a deleted secret's bytes are overwritten, not left free
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
        self._db.executescript(SCHEMA)

    def insert(self, job_id: str, name: str, priority: int, queue: str, preemptible: bool,
               spec: dict, request: dict, plan: dict | None,
               secrets: dict[str, str] | None = None) -> tuple[JobRow, bool]:
        """Add a QUEUED job (and its secrets, in the same transaction); returns (row, created).
        A repeated id returns the existing row."""
        now = time.time()
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO jobs (id, name, state, priority, queue, preemptible, spec, request,"
                " plan, history, submitted_at, updated_at) VALUES (?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, name, priority, queue, int(preemptible), json.dumps(spec), json.dumps(request),
                 json.dumps(plan) if plan is not None else None,
                 json.dumps([{"state": "QUEUED", "at": now, "reason": None}]), now, now),
            )
            created = cursor.rowcount == 1
            if created and secrets:
                self._db.execute("INSERT INTO secrets (id, env) VALUES (?, ?)", (job_id, json.dumps(secrets)))
        return self.get(job_id), created

    def secrets(self, job_id: str) -> dict[str, str]:
        """A job's secret env values (NAME -> value), kept apart from the job row and never served."""
        with self._lock:
            row = self._db.execute("SELECT env FROM secrets WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row["env"]) if row else {}

    def keep_attempt(self, job_id: str, attempt: int, events: list[dict], log_tail: str) -> None:
        """What an ended attempt reported (its orch events) and the end of its log: Ray forgets
        both with the cluster, and results, ``init_from: job:NAME`` and ``orch logs`` need them."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO attempts (id, attempt, events, log_tail) VALUES (?, ?, ?, ?)",
                             (job_id, attempt, json.dumps(events), log_tail))

    def keep_summary(self, job_id: str, summary: dict) -> None:
        """What `orch list` shows of a job's kept attempts (it reads no events)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO summaries (id, summary) VALUES (?, ?)",
                             (job_id, json.dumps(summary)))

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

    @contextlib.contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def get(self, job_id: str) -> JobRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row else None

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
        return _row(row) if row else None

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
        return [_row(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of one job (JSON columns take Python values)."""
        fields["updated_at"] = time.time()
        for key in _JSON_COLUMNS:
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        columns = ", ".join(f"{key} = ?" for key in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))

    def transition(self, job_id: str, state: str, reason: str | None = None, at: float | None = None,
                   **fields: Any) -> bool:
        """Move a job to ``state``, recording it in the job's history at ``at`` (default: now; the
        control plane passes its clock, which time limits are measured by). A move its current state
        does not allow (``lifecycle.TRANSITIONS``) changes nothing and returns False: a poll that
        saw a job end after it was cancelled, say, leaves it CANCELLED."""
        with self._lock:
            row = self._db.execute("SELECT state, history FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            try:
                check_transition(row["state"], state)
            except ValueError as refused:
                log.warning("job %s: %s; left %s", job_id, refused, row["state"])
                return False
            history = json.loads(row["history"])
            history.append({"state": state, "at": time.time() if at is None else at, "reason": reason})
            self.update(job_id, state=state, reason=reason, history=history, **fields)
            if state in TERMINAL:  # an ended job runs no more: its secrets go
                if self._db.execute("DELETE FROM secrets WHERE id = ?", (job_id,)).rowcount:
                    # The write-ahead log still holds the pages that held them: fold it in and empty it.
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(row: sqlite3.Row) -> JobRow:
    data = dict(row)
    for key in _JSON_COLUMNS:
        data[key] = json.loads(data[key]) if data[key] else None
    data["preemptible"] = bool(data["preemptible"])
    return JobRow(**data)
