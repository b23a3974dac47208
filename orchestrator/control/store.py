"""The control plane's durable job table: SQLite in WAL mode on the head node; its writes.

Every fact about a job lives here, written before it is acted on, so killing
the control plane (or `orch down` then `orch up`) loses nothing: on restart
it reads the table and reconciles with Ray. Inserts are idempotent by job id,
so a client that retries a submit never creates a job twice. The table's
layout and its reads are ``adapters/job_table.py``'s: the client reads the
same file there when the cluster is down, and the client may not import this room.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from orchestrator.adapters.job_table import JSON_COLUMNS, SCHEMA, JobRow, JobTable
from orchestrator.core.lifecycle import JobState, check_transition
from orchestrator.core.spec import JobSpec

__all__ = ["JobRow", "Store"]  # JobRow: the control plane's modules name rows from here


def _private(path: Path) -> None:
    """The job store (it holds queued jobs' secrets) readable by this user only; SQLite gives
    its -wal and -shm files the database file's mode."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            os.chmod(name, 0o600)


log = logging.getLogger(__name__)


class Store(JobTable):
    """Thread-safe access to the job table (one connection, one lock): the reads are
    ``JobTable``'s (the client reads the file with them too when the cluster is down)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.folder = path.parent  # the head-node folder of orch's state (job packages live there too)
        _private(path)
        super().__init__(sqlite3.connect(str(path), check_same_thread=False, isolation_level=None))
        self._db.execute("PRAGMA secure_delete=ON")  # a deleted secret's bytes are overwritten, not left free
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
        self._db.executescript(SCHEMA)

    def insert(self, job_id: str, spec: JobSpec, spec_json: dict, request: dict,
               secrets: dict[str, str] | None = None) -> tuple[JobRow, bool]:
        """Add a QUEUED job (and its secrets, in the same transaction): ``spec`` validated,
        ``spec_json`` as submitted; returns (row, created). A repeated id returns the existing row."""
        now, queued = time.time(), JobState.QUEUED.value
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO jobs (id, name, state, priority, queue, preemptible, spec, request,"
                " plan, history, submitted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, spec.name, queued, spec.schedule.priority, spec.schedule.queue,
                 int(spec.schedule.preemptible), json.dumps(spec_json), json.dumps(request), None,
                 json.dumps([{"state": queued, "at": now, "reason": None}]), now, now),
            )
            created = cursor.rowcount == 1
            if created:
                self._specs[job_id] = spec  # validated by the caller: not again when the row is read
                if secrets:
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

    @contextlib.contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of one job (JSON columns take Python values)."""
        fields["updated_at"] = time.time()
        for key in JSON_COLUMNS:
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        columns = ", ".join(f"{key} = ?" for key in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))

    def transition(self, job_id: str, state: JobState, reason: str | None = None, at: float | None = None,
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
                state = check_transition(row["state"], state)
            except ValueError as refused:
                log.warning("job %s: %s; left %s", job_id, refused, row["state"])
                return False
            history = json.loads(row["history"])
            history.append({"state": state.value, "at": time.time() if at is None else at, "reason": reason})
            self.update(job_id, state=state.value, reason=reason, history=history, **fields)
            if state.is_terminal:  # an ended job runs no more: its secrets go
                self._specs.pop(job_id, None)
                if self._db.execute("DELETE FROM secrets WHERE id = ?", (job_id,)).rowcount:
                    # The write-ahead log still holds the pages that held them: fold it in and empty it.
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

