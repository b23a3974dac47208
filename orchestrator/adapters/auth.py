"""Ray's token auth, in one place: where the token lives and how requests carry it.

Ray 2.60 turns token auth on for local clusters. orch keeps it on: the CLI and
every process it starts run with ``RAY_AUTH_MODE=token`` and send the token
as a bearer header to the dashboard and Jobs API. A cluster reached with
``--address`` must have token auth too (`check_token_auth`), unless the user
says ``--insecure`` (``ORCH_INSECURE=1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from orchestrator.core.errors import ClusterUnavailable


def token_path() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token")).expanduser()


def token() -> str | None:
    """The cluster token: ``RAY_AUTH_TOKEN``, else the token file."""
    value = os.environ.get("RAY_AUTH_TOKEN")
    if value:
        return value.strip()
    try:
        return token_path().read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_token() -> None:
    """Generate the local token if there is none, as `ray start` requires one."""
    if token():
        return
    ray = Path(sys.executable).with_name("ray")
    result = subprocess.run([str(ray) if ray.exists() else "ray", "get-auth-token", "--generate"],
                            capture_output=True, text=True, env=ray_env())
    if result.returncode != 0 or not token():
        raise ClusterUnavailable(f"could not create the Ray auth token at {token_path()}: {result.stderr.strip()}")


def ray_env() -> dict[str, str]:
    """The environment for Ray processes and clients orch starts."""
    return {**os.environ, "RAY_AUTH_MODE": "token"}


def apply_to_environ() -> None:
    """Make in-process Ray clients (Jobs SDK, GCS client) send the token."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def request(url: str, data: bytes | None = None, method: str | None = None,
            content_type: str = "application/json") -> urllib.request.Request:
    headers = {"Content-Type": content_type} if data is not None else {}
    secret = token()
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return urllib.request.Request(url, data=data, method=method, headers=headers)


# ---- clusters reached with --address -------------------------------------------

INSECURE_ENV = "ORCH_INSECURE"  # `--insecure`: accept a cluster whose Jobs API needs no token
PROBE_TIMEOUT_S = 10
_probed: dict[str, bool] = {}  # dashboard URL -> has token auth; per process: `--wait` polls


def insecure() -> bool:
    return os.environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def token_source() -> str:
    """Where `token` reads the token from, for messages."""
    if (os.environ.get("RAY_AUTH_TOKEN") or "").strip():
        return "RAY_AUTH_TOKEN"
    return f"the token file {token_path()}"


def refused(where: str, code: int | None = None) -> str:
    """Why ``where`` (the control plane, the Jobs API) answered 401/403, and what to do."""
    status = f" (HTTP {code})" if code else ""
    if token() is None:
        return (f"{where} requires the cluster's auth token{status}, and orch found none: RAY_AUTH_TOKEN is "
                f"unset and {token_path()} does not exist. Set RAY_AUTH_TOKEN_PATH to the cluster's token "
                "file (or RAY_AUTH_TOKEN to the token).")
    return (f"{where} refused the auth token orch read from {token_source()}{status}: it is not this "
            "cluster's token. Set RAY_AUTH_TOKEN_PATH to the cluster's token file (or RAY_AUTH_TOKEN to the token).")


def check_token_auth(dashboard_url: str, allow_insecure: bool | None = None) -> bool:
    """Refuse a cluster that answers without a token; True when it has token auth.

    One request without the token to ``/api/version`` (a Jobs API route, guarded
    like the rest of it): 401/403 means token auth is on. A 200 means anyone who
    reaches the dashboard can run code on the cluster: ClusterUnavailable, unless
    ``allow_insecure`` (default: ``ORCH_INSECURE``). Cached per URL for the process.
    """
    allow_insecure = insecure() if allow_insecure is None else allow_insecure
    if dashboard_url in _probed and (_probed[dashboard_url] or allow_insecure):
        return _probed[dashboard_url]
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{dashboard_url}/api/version"),
                                    timeout=PROBE_TIMEOUT_S) as reply:
            body = reply.read(65536)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            _probed[dashboard_url] = True
            return True
        raise ClusterUnavailable(f"{dashboard_url} does not look like a Ray dashboard: GET /api/version "
                                 f"answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise ClusterUnavailable(f"cannot reach the Ray dashboard at {dashboard_url}: {reason}") from None
    try:
        version = json.loads(body).get("ray_version")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        version = None
    if not version:
        raise ClusterUnavailable(f"{dashboard_url} does not look like a Ray dashboard: GET /api/version "
                                 "answered without a Ray version")
    if not allow_insecure:
        raise ClusterUnavailable(
            f"the Ray cluster at {dashboard_url} has no token auth: its Jobs API answered a request without a "
            "token, so anyone who reaches it can run code on every node. Turn token auth on (RAY_AUTH_MODE=token "
            f"on every node; see docs/deploy.md), or pass --insecure (or set {INSECURE_ENV}=1) to use it anyway.")
    _probed[dashboard_url] = False
    return False
