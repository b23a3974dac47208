"""How orch reaches a cluster: its control plane and Ray's Jobs API, over HTTP.

Reads are plain HTTP (no Ray import), so `orch list` and `orch status` stay
fast. Ray's own ``JobSubmissionClient`` is used where it does real work:
packaging and uploading ``working_dir``, and submitting Ray Jobs.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

from orchestrator import auth
from orchestrator.cluster import ClusterInfo
from orchestrator.errors import ClusterUnavailable, InfeasibleError, JobNotFound, SpecError

HTTP_TIMEOUT_S = 30


def http(base: str, path: str, data: dict | None = None, method: str | None = None) -> Any:
    """One JSON request with the cluster token; errors become orch's typed errors."""
    body = json.dumps(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(auth.request(f"{base}{path}", body, method), timeout=HTTP_TIMEOUT_S) as reply:
            payload = reply.read()
    except urllib.error.HTTPError as error:
        raise _typed(base, path, error) from None
    except (urllib.error.URLError, OSError) as error:
        raise ClusterUnavailable(f"cannot reach {base}: {error}") from None
    return json.loads(payload) if payload else None


def _typed(base: str, path: str, error: urllib.error.HTTPError) -> Exception:
    try:
        detail = json.loads(error.read() or b"{}")
    except json.JSONDecodeError:
        detail = {}
    if error.code in (401, 403):
        return ClusterUnavailable(f"{base} refused the auth token (HTTP {error.code}); set RAY_AUTH_TOKEN or "
                                  f"the token file {auth.token_path()} to the cluster's token")
    if error.code == 404:
        return JobNotFound(path.split("/jobs/", 1)[1].split("/")[0] if "/jobs/" in path else path)
    if error.code == 422 and detail.get("type") == "InfeasibleError":
        return InfeasibleError(detail["error"].split(" ", 1)[0], detail.get("reasons") or [detail["error"]])
    if error.code == 422:
        return SpecError(detail.get("error", "rejected"))
    return ClusterUnavailable(f"{base}{path}: HTTP {error.code}: {detail.get('error', '')}")


TRAIN_WORKER = "RayTrainWorker"  # the actor class of Ray Train's workers


class ControlClient:
    """orch's control plane: the queue and the job table."""

    def __init__(self, info: ClusterInfo):
        if not info.control_url:
            raise ClusterUnavailable(f"cannot reach an orch control plane for {info.dashboard_url}: orch's queue "
                                     "runs beside a cluster that `orch up` started on this machine")
        self.base = info.control_url

    def submit(self, submission: dict) -> dict:
        return http(self.base, "/jobs", submission, "POST")

    def plan(self, body: dict) -> dict:
        """The plan for a spec against the cluster as orch's jobs hold it now."""
        return http(self.base, "/plan", body, "POST")

    def list(self) -> list[dict]:
        return http(self.base, "/jobs")

    def get(self, job: str) -> dict:
        return http(self.base, f"/jobs/{urllib.request.quote(job)}")

    def cancel(self, job: str) -> dict:
        return http(self.base, f"/jobs/{urllib.request.quote(job)}/cancel", {}, "POST")


class JobsClient:
    """The Ray Jobs API of one cluster."""

    def __init__(self, info: ClusterInfo):
        self.base = info.dashboard_url

    def list(self) -> list[dict]:
        return http(self.base, "/api/jobs/")

    def get(self, submission_id: str) -> dict:
        return http(self.base, f"/api/jobs/{submission_id}")

    def logs(self, submission_id: str) -> str:
        try:
            return http(self.base, f"/api/jobs/{submission_id}/logs")["logs"]
        except JobNotFound:  # admitted a moment ago: the control plane has not handed it to Ray yet
            return ""

    def stop(self, submission_id: str) -> bool:
        return bool(http(self.base, f"/api/jobs/{submission_id}/stop", {}, "POST")["stopped"])

    def _sdk(self):
        auth.apply_to_environ()
        from ray.job_submission import JobSubmissionClient

        secret = auth.token()
        try:
            client = JobSubmissionClient(self.base, headers={"Authorization": f"Bearer {secret}"} if secret else {})
        except ConnectionError as error:
            raise ClusterUnavailable(f"cannot reach the Ray dashboard at {self.base}: {error}") from None
        # After the client: Ray sets up its loggers on first use. No per-upload INFO lines in the CLI.
        logging.getLogger("ray.dashboard.modules.dashboard_sdk").setLevel(logging.WARNING)
        return client

    def worker_usage(self, submission_id: str) -> list[dict[str, Any]]:
        """CPU, memory and GPU use of a job's live Ray Train workers, from the dashboard's
        per-process stats (what its Actors page shows)."""
        job_id = self.get(submission_id).get("job_id")
        actors = http(self.base, "/logical/actors")["data"]["actors"].values()
        usage = []
        for actor in actors:
            if actor.get("className") != TRAIN_WORKER or actor.get("state") != "ALIVE" or actor.get("jobId") != job_id:
                continue
            stats = actor.get("processStats") or {}
            usage.append({
                "pid": actor.get("pid"), "node_id": actor["address"]["nodeId"],
                "cpu_percent": stats.get("cpuPercent"), "rss_bytes": (stats.get("memoryInfo") or {}).get("rss"),
                "gpus": [{"name": g.get("name"), "utilization_percent": g.get("utilizationGpu"),
                          "memory_used_mib": g.get("memoryUsed"), "memory_total_mib": g.get("memoryTotal")}
                         for g in actor.get("gpus") or []],
            })
        return sorted(usage, key=lambda u: u["pid"] or 0)

    def upload_working_dir(self, path: str) -> str:
        """Package and upload a folder to the cluster; returns its ``gcs://`` URI.

        Done at submit time, so a queued job runs the code as it was submitted.
        """
        runtime_env = {"working_dir": path}
        # Ray's client method: it hashes, zips and uploads only when the package is new.
        self._sdk()._upload_working_dir_if_needed(runtime_env)
        return runtime_env["working_dir"]

    def submit(self, *, entrypoint: str, submission_id: str, runtime_env: dict, metadata: dict[str, str]) -> str:
        return self._sdk().submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                      runtime_env=runtime_env, metadata=metadata)

    def follow_logs(self, submission_id: str, poll_s: float = 1.0) -> Iterator[str]:
        """Yield new log text until the job ends."""
        seen = 0
        while True:
            done = self.get(submission_id)["status"] in ("SUCCEEDED", "FAILED", "STOPPED")
            text = self.logs(submission_id)
            if len(text) > seen:
                yield text[seen:]
                seen = len(text)
            if done:
                return
            time.sleep(poll_s)
