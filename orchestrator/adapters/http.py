"""One HTTP request to a cluster service (Ray's Jobs API, orch's control plane) with the
cluster token; its errors become orch's typed errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from orchestrator.adapters import auth
from orchestrator.core.errors import ClusterUnavailable, InfeasibleError, JobNotFound, SpecError

HTTP_TIMEOUT_S = 30
SLOWEST_UPLOAD_BYTES_PER_S = 1 << 20  # a package over a slow tunnel gets time to arrive


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
