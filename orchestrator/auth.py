"""Ray's token auth, in one place: where the token lives and how requests carry it.

Ray 2.60 turns token auth on for local clusters. orch keeps it on: the CLI and
every process it starts run with ``RAY_AUTH_MODE=token`` and send the token
as a bearer header to the dashboard and Jobs API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from orchestrator.errors import ClusterUnavailable


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


def request(url: str, data: bytes | None = None, method: str | None = None) -> urllib.request.Request:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    secret = token()
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return urllib.request.Request(url, data=data, method=method, headers=headers)
