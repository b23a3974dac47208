"""How orch reaches a cluster: its control plane and Ray's Jobs API, over HTTP.

Reads are plain HTTP (no Ray import), so `orch list` and `orch status` stay
fast. Ray's own code does the real work: its packaging turns ``working_dir``
into a package (``packages.py``), its ``JobSubmissionClient`` submits Ray Jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from orchestrator import auth, packages
from orchestrator.cluster import ClusterInfo
from orchestrator.errors import ClusterUnavailable, InfeasibleError, JobNotFound, SpecError

HTTP_TIMEOUT_S = 30
SLOWEST_UPLOAD_BYTES_PER_S = 1 << 20  # a package over a slow tunnel gets time to arrive
ENDED_IN_RAY = ("SUCCEEDED", "FAILED", "STOPPED")  # Ray job statuses that end an attempt


def http(base: str, path: str, data: dict | bytes | None = None, method: str | None = None, *,
         service: str | None = None, unreachable: str = "") -> Any:
    """One request with the cluster token (a JSON body, or bytes as they are); the JSON answer.
    Errors become orch's typed errors.

    ``service`` names what answers at ``base`` in messages; ``unreachable`` is
    added to the message when nothing answers there.
    """
    raw = isinstance(data, bytes)
    body = data if raw else json.dumps(data).encode() if data is not None else None
    asked = auth.request(f"{base}{path}", body, method, "application/octet-stream" if raw else "application/json")
    timeout = HTTP_TIMEOUT_S + len(body or b"") / SLOWEST_UPLOAD_BYTES_PER_S
    try:
        with urllib.request.urlopen(asked, timeout=timeout) as reply:
            payload = reply.read()
    except urllib.error.HTTPError as error:
        raise _typed(base, path, error, service) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        where = f"{service} at {base}" if service else base
        raise ClusterUnavailable(f"cannot reach {where}: {reason}{unreachable}") from None
    return json.loads(payload) if payload else None


def _typed(base: str, path: str, error: urllib.error.HTTPError, service: str | None = None) -> Exception:
    try:
        detail = json.loads(error.read() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    if error.code in (401, 403):
        return ClusterUnavailable(auth.refused(f"{service or 'the cluster'} at {base}", error.code))
    if error.code == 501 or (error.code == 404 and str(detail.get("error", "")).startswith("no route ")):
        return ClusterUnavailable(f"{service or base} at {base} does not serve {error.code == 501 and 'PUT ' or ''}"
                                  f"{path}: it runs an older orch than this one; upgrade orch there and restart "
                                  "`orch serve`")
    if error.code == 404:
        return JobNotFound(urllib.parse.unquote(path.split("/jobs/", 1)[1].split("/")[0]) if "/jobs/" in path else path)
    if error.code == 422 and detail.get("type") == "InfeasibleError":
        return InfeasibleError(detail["error"].split(" ", 1)[0], detail.get("reasons") or [detail["error"]])
    if error.code == 422:
        return SpecError(detail.get("error", "rejected"))
    if error.code == 413:  # refused for good (a launch must not retry it as an outage)
        return SpecError(f"{base}{path}: too large for {service or 'the cluster'} (HTTP 413)")
    if error.code == 503 and detail.get("type") == "ClusterUnavailable":
        return ClusterUnavailable(detail["error"])
    return ClusterUnavailable(f"{base}{path}: HTTP {error.code}: {detail.get('error', '')}")


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

    def upload_working_dir(self, path: str, leave_out: Iterable[Path] = ()) -> str:
        """Package a folder as Ray does and hand it to the control plane (unless it has it);
        its ``gcs://`` URI. Done at submit time, so a queued job runs the code as submitted."""
        return packages.package_working_dir(path, self._has_package, self._put_package, leave_out)

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
