"""orch's control plane as the client reaches it: the queue and the job table, over HTTP."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any, Iterable

from orchestrator.adapters import packages
from orchestrator.adapters.cluster import ClusterInfo
from orchestrator.adapters.http import http
from orchestrator.core.errors import ClusterUnavailable, JobNotFound


def _job_path(job: str) -> str:
    """The control plane's path of a job id or name, as one path segment whatever it holds."""
    if not job.strip():
        raise JobNotFound(job)
    return f"/jobs/{urllib.request.quote(job, safe='')}"


class ControlClient:
    """orch's control plane: the queue and the job table."""

    def __init__(self, info: ClusterInfo):
        if not info.control_url:
            raise ClusterUnavailable(f"cannot reach an orch control plane for {info.dashboard_url}: orch's queue "
                                     "runs beside a cluster that `orch up` started on this machine")
        self.base = info.control_url
        # A cluster orch did not start here: its head runs `orch serve`, reached through a tunnel.
        self.unreachable = "" if info.started_by_orch else (
            f". Is orch's control plane running on the head of {info.dashboard_url} (`orch serve`, see "
            f"docs/deploy.md) and its port forwarded? Set ORCH_CONTROL_ADDRESS if it listens elsewhere.")

    def _call(self, path: str, data: dict | bytes | None = None, method: str | None = None) -> Any:
        return http(self.base, path, data, method, service="the orch control plane", unreachable=self.unreachable)

    def submit(self, submission: dict) -> dict:
        return self._call("/jobs", submission, "POST")

    def upload_working_dir(self, path: str, leave_out: Iterable[Path] = (), excludes: Iterable[str] = ()) -> str:
        """Package a folder as Ray does (without ``excludes``, gitignore patterns) and hand it to
        the control plane (unless it has it); its ``gcs://`` URI. Done at submit time, so a
        queued job runs the code as submitted."""
        return packages.package_working_dir(path, self._has_package, self._put_package, leave_out, excludes)

    def _has_package(self, name: str) -> bool:
        try:
            self._call(f"/packages/{name}")
            return True
        except JobNotFound:
            return False

    def _put_package(self, name: str, data: bytes) -> None:
        self._call(f"/packages/{name}", data, "PUT")

    def plan(self, body: dict) -> dict:
        """The plan for a spec against the cluster as orch's jobs hold it now."""
        return self._call("/plan", body, "POST")

    def check(self, sent: dict) -> dict:
        """A spec's text (``text``, ``source``, ``overrides``) checked against the models there:
        ``{"problems"}`` in a Report's JSON, else the valid spec's JSON (``spec``) and its plan."""
        return self._call("/specs", sent, "POST")

    def dry_run(self, submission: dict) -> dict:
        """The plan and the Ray Job request admission would send now, without queueing anything."""
        return self._call("/dry-run", submission, "POST")

    def list(self) -> list[dict]:
        return self._call("/jobs")

    def cluster(self) -> dict:
        """Nodes, and queues with their quota, use and borrowing, as the control plane sees them."""
        return self._call("/cluster")

    def get(self, job: str) -> dict:
        return self._call(_job_path(job))

    def kept_log(self, job: str) -> str | None:
        """The end of the job's latest attempt's log as the control plane kept it when it ended."""
        return self._call(f"{_job_path(job)}/log")["log"]

    def cancel(self, job: str) -> dict:
        return self._call(f"{_job_path(job)}/cancel", {}, "POST")
