"""Handing admitted jobs to Ray: write ahead, put the job's code back, write its secrets
file, submit the Ray Job. Also the code packages and secrets files the control plane keeps
for its jobs, each forgotten when nothing needs it any more."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path
from typing import Callable

from orchestrator.adapters import packages
from orchestrator.adapters.jobs import JobsClient
from orchestrator.control.store import JobRow, Store
from orchestrator.core.errors import ClusterUnavailable, SpecError
from orchestrator.core.launch import launch_request
from orchestrator.core.lifecycle import CODE_NOT_SET_UP, JobState

SECRETS_DIR = ".orch-secrets"


class Launcher:
    """Launches attempts of the store's jobs through ``jobs`` (Ray's Jobs API)."""

    def __init__(self, store: Store, jobs: JobsClient, code: packages.PackageStore, storage: str,
                 clock: Callable[[], float]):
        self.store, self.jobs, self.code, self.storage, self.clock = store, jobs, code, storage, clock

    def launch(self, row: JobRow, plan: dict, resubmit: bool = False) -> None:
        """Start the job's next attempt with ``plan`` (``resubmit``: hand its current attempt,
        written ahead, to Ray again)."""
        attempt = row.attempt if resubmit else row.attempt + 1
        submission_id = row.id if attempt == 1 else f"{row.id}-attempt{attempt}"
        # Write ahead: a crash after this line relaunches, never loses the job. A job that may not
        # move to STARTING (it ended meanwhile) is not launched.
        if not resubmit and not self.store.transition(row.id, JobState.STARTING, None, self.clock(),
                                                      attempt=attempt, plan=plan, ray_submission_id=submission_id):
            return
        try:
            self._restore_code(row.request["runtime_env"].get("working_dir"),
                               anew=(row.reason or "").startswith(CODE_NOT_SET_UP))
            request = launch_request(row.id, row.spec_json, row.request["runtime_env"], plan, attempt, self.storage,
                                     secrets_file=self._write_secrets(row.id, submission_id))
            self.jobs.submit(entrypoint=request["entrypoint"], submission_id=submission_id,
                             runtime_env=request["runtime_env"], metadata=request["metadata"])
        except Exception as error:
            if "already exists" in str(error):
                return
            self.forget_secrets(submission_id)
            if isinstance(error, (ClusterUnavailable, OSError)):
                traceback.print_exc()  # Ray out of reach a moment: the next step's reconcile launches again
                return
            # Ray refused it (a bad working_dir package, ...): the job failed
            now = self.clock()
            self.store.transition(row.id, JobState.FAILED, f"Ray refused the job: {error}", now, ended_at=now)

    # ---- the jobs' code ---------------------------------------------------------------

    def require_code(self, working_dir: str | None) -> None:
        """A job's code must be kept here before it is queued: it is put back into Ray from here."""
        name = packages.name_of(working_dir)
        if name and not self.code.path(name):
            raise SpecError(f"working_dir: the control plane has no package {name} (it was not uploaded, "
                            "or was dropped as unused); submit the job again")

    def code_kept(self, row: JobRow) -> bool:
        name = packages.name_of(row.request["runtime_env"].get("working_dir"))
        return bool(name and self.code.path(name))

    def _restore_code(self, working_dir: str | None, anew: bool = False) -> None:
        """Put the job's code back into Ray's GCS if Ray dropped it (an upload unused for
        10 minutes, a restarted cluster), or ``anew`` after Ray could not set it up; jobs
        queued before orch kept packages have none here."""
        name = packages.name_of(working_dir)
        kept = self.code.path(name) if name else None
        if kept:
            self.jobs.ensure_package(name, kept, anew)

    def forget_code(self, rows: list[JobRow]) -> list[str]:
        """Drop kept packages that none of ``rows`` (the queued and active jobs) uses and
        nothing used for a while; their names."""
        used = {packages.name_of(row.request["runtime_env"].get("working_dir")) for row in rows}
        return self.code.forget_unused(name for name in used if name)

    # ---- the jobs' secrets files ------------------------------------------------------

    def _secrets_path(self, submission_id: str) -> Path:
        return Path(self.storage) / SECRETS_DIR / f"{submission_id}.json"

    def forget_secrets(self, submission_id: str | None) -> None:
        """An attempt that ended (or never started) leaves no secrets file: its driver may never
        have read (and deleted) it, and storage is readable by later jobs."""
        if submission_id:
            self._secrets_path(submission_id).unlink(missing_ok=True)

    def _write_secrets(self, job_id: str, submission_id: str) -> str | None:
        """The job's secrets in a file only this user can read; the driver reads and deletes it.

        Ray's job record (entrypoint, runtime env, metadata) is served by the
        Jobs API and dashboard to anyone with the token, so secrets never go there.
        """
        secrets = self.store.secrets(job_id)
        if not secrets:
            return None
        path = self._secrets_path(submission_id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(secrets, handle)
        return str(path)
