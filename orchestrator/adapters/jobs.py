"""Ray's Jobs API of one cluster: submit, read, stop Ray Jobs and see their workers.

Reads are plain HTTP (no Ray import), so a user's `orch` needs no Ray. Only the
control plane submits, through Ray's own ``JobSubmissionClient``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

from orchestrator.adapters import auth
from orchestrator.adapters.cluster import ClusterInfo
from orchestrator.adapters.http import http
from orchestrator.core.errors import ClusterUnavailable, JobNotFound



class RayStatus(str, Enum):
    """A Ray Job's status as Ray's Jobs API reports it (Ray's ``JobStatus`` values, spelled here so
    that reads need no Ray import): Ray's words for an attempt, not orch's job states."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


ENDED_IN_RAY = (RayStatus.SUCCEEDED, RayStatus.FAILED, RayStatus.STOPPED)  # Ray statuses that end an attempt


@contextlib.contextmanager
def _ray_auth_errors(base: str) -> Iterator[None]:
    """Ray's Jobs SDK raises AuthenticationError on 401/403: orch's message and exit code 3."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError:
        raise ClusterUnavailable(auth.refused(f"the Ray Jobs API at {base}")) from None


TRAIN_WORKER = "RayTrainWorker"  # the actor class of Ray Train's workers
DATA_WORKER = "MapWorker"  # Ray Data's map_batches actors are "MapWorker(MapBatches(<class>))"


def worker_role(class_name: str) -> str | None:
    """"train" or "predict" for an actor class that runs a job's own code, else None."""
    if class_name == TRAIN_WORKER:
        return "train"
    return "predict" if class_name.startswith(DATA_WORKER) else None


def usage_rows(workers: list[dict], nodes: dict[str, dict], now: float) -> list[dict[str, Any]]:
    """One row per worker actor (state API rows) with its process's figures from its node's
    dashboard stats (``/nodes/{id}`` details). A node agent reports every few seconds, so a
    worker that started since its last report has no figures yet (None), and each row says
    how old its node's figures are. GPUs are those the process uses (with its own memory on
    each); TPU chips are not per process, so a row shows its node's."""
    rows = []
    for worker in workers:
        node, pid = nodes.get(worker["node_id"]) or {}, worker["pid"]
        proc = next((p for p in node.get("workers") or [] if p.get("pid") == pid), None)
        gpus = []
        for gpu in node.get("gpus") or []:
            mine = next((p for p in gpu.get("processesPids") or [] if p.get("pid") == pid), None)
            if mine is not None:
                gpus.append({"index": gpu.get("index"), "name": gpu.get("name"),
                             "utilization_percent": gpu.get("utilizationGpu"),
                             "process_memory_mib": mine.get("gpuMemoryUsage"),
                             "memory_used_mib": gpu.get("memoryUsed"), "memory_total_mib": gpu.get("memoryTotal")})
        rows.append({
            "pid": pid, "node_id": worker["node_id"], "role": worker_role(worker.get("class_name", "")),
            "figures_age_s": max(round(now - node["now"], 1), 0.0) if proc and node.get("now") else None,
            "cpu_percent": proc.get("cpuPercent") if proc else None,
            "rss_bytes": (proc.get("memoryInfo") or {}).get("rss") if proc else None,
            "gpus": gpus,
            "node_tpus": [{"index": tpu.get("index"), "name": tpu.get("name"),
                           "tensorcore_percent": tpu.get("tensorcoreUtilization"),
                           "hbm_percent": tpu.get("hbmUtilization")} for tpu in node.get("tpus") or []],
        })
    return sorted(rows, key=lambda row: row["pid"])


class JobsClient:
    """The Ray Jobs API of one cluster."""

    def __init__(self, info: ClusterInfo):
        self.base = info.dashboard_url

    def _http(self, path: str, data: dict | bytes | None = None, method: str | None = None) -> Any:
        return http(self.base, path, data, method, service="the Ray Jobs API")

    def list(self) -> list[dict]:
        return self._http("/api/jobs/")

    def get(self, submission_id: str) -> dict:
        return self._http(f"/api/jobs/{submission_id}")

    def logs(self, submission_id: str) -> str:
        try:
            return self._http(f"/api/jobs/{submission_id}/logs")["logs"]
        except JobNotFound:  # admitted a moment ago: the control plane has not handed it to Ray yet
            return ""

    def stop(self, submission_id: str) -> bool:
        return bool(self._http(f"/api/jobs/{submission_id}/stop", {}, "POST")["stopped"])

    def _sdk(self):
        auth.apply_to_environ()
        from ray.job_submission import JobSubmissionClient

        secret = auth.token()
        try:
            with _ray_auth_errors(self.base):
                client = JobSubmissionClient(self.base, headers={"Authorization": f"Bearer {secret}"} if secret else {})
        except ConnectionError as error:
            raise ClusterUnavailable(f"cannot reach the Ray dashboard at {self.base}: {error}") from None
        # After the client: Ray sets up its loggers on first use. No per-submit INFO lines in the CLI.
        logging.getLogger("ray.dashboard.modules.dashboard_sdk").setLevel(logging.WARNING)
        return client

    def worker_usage(self, submission_id: str) -> list[dict[str, Any]]:
        """CPU, memory and GPU use of a job's live workers (Ray Train workers, Ray Data map
        workers): the workers from Ray's state API, their processes' figures from the dashboard
        agent of each worker's node (what the dashboard's cluster view shows)."""
        job_id = self.get(submission_id).get("job_id")
        if not job_id:
            return []
        query = f"/api/v0/actors?detail=1&limit=10000&filter_keys=job_id&filter_predicates=%3D&filter_values={job_id}"
        workers = [a for a in http(self.base, query)["data"]["result"]["result"]
                   if a.get("state") == "ALIVE" and a.get("pid") and worker_role(a.get("class_name", ""))]
        nodes = {n: http(self.base, f"/nodes/{n}")["data"]["detail"] for n in {w["node_id"] for w in workers}}
        return usage_rows(workers, nodes, time.time())

    def ensure_package(self, name: str, path: Path, anew: bool = False) -> None:
        """Put the package file at ``path`` into the cluster's GCS as ``name`` unless it is
        there (or ``anew``). Asking pins it there for a while (Ray's temporary reference)."""
        try:
            self._http(f"/api/packages/gcs/{name}")
        except JobNotFound:  # 404: not (or no longer) in the GCS
            anew = True
        if anew:
            self._http(f"/api/packages/gcs/{name}", path.read_bytes(), "PUT")

    def submit(self, *, entrypoint: str, submission_id: str, runtime_env: dict, metadata: dict[str, str]) -> str:
        sdk = self._sdk()
        with _ray_auth_errors(self.base):
            return sdk.submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                  runtime_env=runtime_env, metadata=metadata)

    def follow_logs(self, submission_id: str, poll_s: float = 1.0,
                    given_up: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """Yield new log text until the job ends in Ray, or, while Ray does not know it,
        until ``given_up`` says it never will (the launch was refused, the job moved on)."""
        seen = 0
        while True:
            try:
                done = self.get(submission_id)["status"] in ENDED_IN_RAY
            except JobNotFound:  # admitted a moment ago: the control plane is handing it to Ray
                done = given_up()
            text = self.logs(submission_id)
            if len(text) > seen:
                yield text[seen:]
                seen = len(text)
            if done:
                return
            time.sleep(poll_s)
