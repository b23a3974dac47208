"""`--address` to a cluster orch did not start, without Ray: stand-in HTTP servers play the
Ray dashboard and orch's control plane (tests/integration/test_remote.py does it for real).

Finding the control plane from the dashboard URL, refusing a cluster without token auth
unless --insecure, wrong and missing tokens (exit 3, one message, nothing submitted), and
`orch serve`'s checks before it starts.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.adapters import auth, cluster
from orchestrator.adapters.ports import free_ports
from orchestrator.control import service
from orchestrator.core.errors import ClusterUnavailable
from tests.conftest import REPO, http_status, run_orch

TOKEN = "stand-in-token"
WHERE = REPO / "tests" / "data" / "placement"


class StandIn:
    """A tiny HTTP server: ``routes`` maps (method, path) to (status, JSON body); with
    ``token``, every route but /api/version answers 401 without ``Bearer token`` (and
    /api/version too when ``token_auth``). Records each request as (method, path)."""

    def __init__(self, routes: dict, token: str | None = None, token_auth: bool = False):
        self.routes, self.token, self.token_auth = routes, token, token_auth
        self.seen: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", 0))
                if length:
                    self.rfile.read(length)
                stand_in.seen.append((method, self.path))
                guarded = stand_in.token and (self.path != "/api/version" or stand_in.token_auth)
                if guarded and self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    code, body = 401, {"error": "missing or wrong token"}
                else:
                    code, body = stand_in.routes.get((method, self.path), (404, {"error": "no route"}))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


VERSION = {("GET", "/api/version"): (200, {"ray_version": "2.60.0", "version": "4"})}


@pytest.fixture
def authless_dashboard():
    """A Ray dashboard with token auth off: its Jobs API answers anyone."""
    server = StandIn({**VERSION, ("GET", "/api/jobs/"): (200, [])})
    yield server
    server.close()


@pytest.fixture
def dashboard():
    """A Ray dashboard with token auth on."""
    server = StandIn({**VERSION, ("GET", "/api/jobs/"): (200, [])}, token=TOKEN, token_auth=True)
    yield server
    server.close()


@pytest.fixture
def control_plane():
    """orch's control plane with no jobs: it answers only requests with the token."""
    plan = {"job": "where", "status": "placeable", "accelerator": "CPU", "workers": 1, "per_worker": {},
            "nodes": ["n"], "cost_per_hour": 0, "rejected": [], "reasons": [], "queue_position": 0}
    server = StandIn({("GET", "/jobs"): (200, []), ("POST", "/plan"): (200, plan),
                      ("GET", "/health"): (200, {"ok": True})}, token=TOKEN)
    yield server
    server.close()


@pytest.fixture
def client_env(tmp_path):
    """A user's shell: its own ORCH_HOME without a cluster.json, the right token."""
    home = tmp_path / "home"
    home.mkdir()
    return {"ORCH_HOME": str(home), "RAY_AUTH_TOKEN": TOKEN, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no-file"),
            "ORCH_CONTROL_ADDRESS": "", "ORCH_INSECURE": "", "ORCH_ADDRESS": ""}


@pytest.fixture(autouse=True)
def _clean_probe_cache(monkeypatch):
    monkeypatch.setattr(auth, "_probed", {})
    for name in ("ORCH_CONTROL_ADDRESS", "ORCH_INSECURE", "ORCH_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


def _job(tmp_path: Path) -> Path:
    spec = {"name": "where", "entrypoint": "where.py:train_loop", "working_dir": str(WHERE),
            "config": {"out": str(tmp_path)}, "resources": {"workers": 1, "accelerator": "CPU", "memory": "1GiB"}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(spec))
    return path


def _clean_failure(done, code: int = 3) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return " ".join(done.stderr.split())  # the console may wrap a long message


# ---- pure parts ---------------------------------------------------------------


def test_the_control_plane_is_looked_for_beside_the_dashboard(monkeypatch):
    assert cluster.as_url("10.0.0.5:8265") == "http://10.0.0.5:8265"
    assert cluster.as_url(" http://127.0.0.1:8265/ ") == "http://127.0.0.1:8265"
    assert cluster.control_url_for("http://127.0.0.1:8265") == "http://127.0.0.1:8266"
    assert cluster.control_url_for("https://head.internal:443") == "http://head.internal:8266"
    assert cluster.control_url_for("http://[::1]:8265") == "http://[::1]:8266"
    monkeypatch.setenv("ORCH_CONTROL_ADDRESS", "127.0.0.1:9999/")
    assert cluster.control_url_for("http://127.0.0.1:8265") == "http://127.0.0.1:9999"


def test_gcs_address_is_read_from_the_dashboard_process_with_that_port():
    dashboard = ["/venv/bin/python3.11", "/venv/lib/python3.11/site-packages/ray/dashboard/dashboard.py",
                 "--host=127.0.0.1", "--port=8265", "--port-retries=0", "--gcs-address=10.0.0.5:6379"]
    other = [*dashboard[:3], "--port=42285", "--gcs-address=10.0.0.5:47581"]
    raylet = ["/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet", "--port=8265",
              "--gcs-address=10.0.0.9:1"]
    retitled = [" ".join(other)]
    lines = [dashboard, other, raylet, retitled, []]
    assert service.gcs_addresses_from(lines, 8265) == {"10.0.0.5:6379"}
    assert service.gcs_addresses_from(lines, 42285) == {"10.0.0.5:47581"}
    assert service.gcs_addresses_from(lines, 1) == set()


def test_gcs_address_not_found_says_to_pass_gcs():
    with pytest.raises(ClusterUnavailable, match="--gcs HOST:PORT"):
        service.find_gcs_address(f"http://127.0.0.1:{free_ports(1)[0]}")


def test_token_auth_probe(dashboard, authless_dashboard):
    assert auth.check_token_auth(dashboard.url) is True
    assert dashboard.seen == [("GET", "/api/version")]  # without the token: that is the test
    with pytest.raises(ClusterUnavailable, match="has no token auth.*--insecure"):
        auth.check_token_auth(authless_dashboard.url)
    assert auth.check_token_auth(authless_dashboard.url, allow_insecure=True) is False
    with pytest.raises(ClusterUnavailable, match="cannot reach the Ray dashboard"):
        auth.check_token_auth(f"http://127.0.0.1:{free_ports(1)[0]}")
    not_ray = StandIn({})
    try:
        with pytest.raises(ClusterUnavailable, match="does not look like a Ray dashboard"):
            auth.check_token_auth(not_ray.url)
    finally:
        not_ray.close()


def test_refusal_names_where_the_token_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
    assert "orch read from RAY_AUTH_TOKEN" in auth.refused("the orch control plane at X", 401)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    token_file = tmp_path / "token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert "does not exist" in auth.refused("X", 401) and str(token_file) in auth.refused("X", 401)
    token_file.write_text("wrong\n")
    assert f"orch read from the token file {token_file}" in auth.refused("X", 403)


def test_resolve_an_address(monkeypatch, tmp_path, dashboard):
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    info = cluster.resolve(dashboard.url)
    assert (info.dashboard_url, info.control_url, info.gcs_address) == (
        dashboard.url, "http://127.0.0.1:8266", None)
    monkeypatch.setenv("ORCH_CONTROL_ADDRESS", "http://127.0.0.1:7000")
    monkeypatch.setenv("ORCH_ADDRESS", dashboard.url)
    assert cluster.resolve(None).control_url == "http://127.0.0.1:7000"


def test_an_address_naming_the_local_cluster_is_the_local_cluster(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    local = cluster.ClusterInfo(dashboard_url="http://127.0.0.1:5", gcs_address="127.0.0.1:6",
                                process_groups=[os.getpgid(0)], control_url="http://127.0.0.1:7")
    cluster._write_state(local)
    held = cluster.hold_control_lock(tmp_path)  # a live control plane, as far as resolve can tell
    try:
        found = cluster.resolve("127.0.0.1:5")  # no probe: nothing answers on port 5
        assert (found.control_url, found.gcs_address) == ("http://127.0.0.1:7", "127.0.0.1:6")
    finally:
        held.close()


# ---- the CLI against stand-ins -------------------------------------------------


def test_cluster_without_token_auth_is_refused_unless_insecure(authless_dashboard, control_plane, client_env):
    env = {**client_env, "ORCH_CONTROL_ADDRESS": control_plane.url}
    message = _clean_failure(run_orch("list", "--address", authless_dashboard.url, env=env))
    assert "has no token auth" in message and "--insecure" in message and "ORCH_INSECURE=1" in message
    assert control_plane.seen == []
    done = run_orch("list", "--address", authless_dashboard.url, "--insecure", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    done = run_orch("list", "--json", env={**env, "ORCH_ADDRESS": authless_dashboard.url, "ORCH_INSECURE": "1"})
    assert done.returncode == 0, done.stderr


def test_wrong_token_exits_3_and_submits_nothing(dashboard, control_plane, client_env, tmp_path):
    env = {**client_env, "ORCH_CONTROL_ADDRESS": control_plane.url, "RAY_AUTH_TOKEN": "wrong"}
    message = _clean_failure(run_orch("submit", str(_job(tmp_path)), "--address", dashboard.url, env=env))
    assert f"the orch control plane at {control_plane.url} refused the auth token" in message
    assert "RAY_AUTH_TOKEN" in message and "RAY_AUTH_TOKEN_PATH" in message
    assert ("POST", "/jobs") not in control_plane.seen
    assert [p for _, p in dashboard.seen] == ["/api/version"]  # nothing uploaded
    for command in (["list"], ["status", "some-job"], ["logs", "some-job"], ["cancel", "some-job"],
                    ["results", "some-job"]):
        message = _clean_failure(run_orch(*command, "--address", dashboard.url, env=env))
        assert "refused the auth token" in message, command


def test_missing_token_exits_3_naming_the_file_looked_for(dashboard, control_plane, client_env):
    env = {**client_env, "ORCH_CONTROL_ADDRESS": control_plane.url, "RAY_AUTH_TOKEN": ""}
    message = _clean_failure(run_orch("list", "--address", dashboard.url, env=env))
    assert "orch found none" in message and client_env["RAY_AUTH_TOKEN_PATH"] in message


def test_right_token_reaches_the_control_plane(dashboard, control_plane, client_env):
    env = {**client_env, "ORCH_CONTROL_ADDRESS": control_plane.url}
    done = run_orch("list", "--address", dashboard.url, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [] and ("GET", "/jobs") in control_plane.seen


def test_no_control_plane_says_how_to_start_one(dashboard, client_env):
    env = {**client_env, "ORCH_CONTROL_ADDRESS": f"127.0.0.1:{free_ports(1)[0]}"}
    message = _clean_failure(run_orch("list", "--address", dashboard.url, env=env))
    assert "cannot reach the orch control plane" in message and "orch serve" in message
    assert "ORCH_CONTROL_ADDRESS" in message


# ---- `orch serve` refuses before it starts ------------------------------------------


def test_serve_refuses_a_cluster_without_token_auth(authless_dashboard, client_env):
    message = _clean_failure(run_orch("serve", "--address", authless_dashboard.url, env=client_env))
    assert "has no token auth" in message and "--insecure" in message


def test_serve_needs_a_token(dashboard, client_env):
    message = _clean_failure(run_orch("serve", "--address", dashboard.url, env={**client_env, "RAY_AUTH_TOKEN": ""}))
    assert "none here" in message and "RAY_AUTH_TOKEN_PATH" in message


def test_serve_without_a_local_dashboard_process_asks_for_gcs(dashboard, client_env):
    message = _clean_failure(run_orch("serve", "--address", dashboard.url, env=client_env))
    assert "--gcs HOST:PORT" in message


def test_serve_on_a_taken_port_exits_3(dashboard, client_env, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_orch("serve", "--address", dashboard.url, "--gcs", "127.0.0.1:1", "--port", str(port),
                        "--home", str(tmp_path / "serve-home"), env=client_env, timeout=120)
    message = _clean_failure(done)
    assert f"cannot listen on 127.0.0.1:{port}" in message and "--port" in message


# ---- the control plane's HTTP side ---------------------------------------------------


def test_control_plane_lets_in_only_the_token(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    server = service.serve(None, 0, "127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        url = f"http://127.0.0.1:{port}/health"
        assert [http_status(url, t) for t in (TOKEN, None, "wrong", "")] == [200, 401, 401, 401]
        monkeypatch.setenv("RAY_AUTH_TOKEN", "")  # the token went away: nobody, not "Bearer " with nothing
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "gone"))
        assert [http_status(url, t) for t in (TOKEN, None, "")] == [401, 401, 401]
    finally:
        server.shutdown()
        server.server_close()


def test_serve_with_a_wrong_gcs_address_exits_3(dashboard, client_env, tmp_path):
    message = _clean_failure(run_orch("serve", "--address", dashboard.url, "--gcs", f"127.0.0.1:{free_ports(1)[0]}",
                                      "--port", str(free_ports(1)[0]), "--home", str(tmp_path / "serve-home"),
                                      env=client_env))
    assert "cannot connect to the GCS at 127.0.0.1:" in message and "--gcs HOST:PORT" in message


def test_control_plane_refuses_a_non_ascii_token_cleanly(monkeypatch):
    import http.client

    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    server = service.serve(None, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        conn.putrequest("GET", "/health")
        conn.putheader("Authorization", "Bearer caf\xe9".encode("latin-1"))
        conn.endheaders()
        assert conn.getresponse().status == 401
    finally:
        server.shutdown()
        server.server_close()


def test_up_with_a_cluster_file_while_orch_address_names_a_remote_cluster_says_so(monkeypatch, tmp_path):
    from orchestrator.core.errors import SpecError

    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    monkeypatch.setattr(cluster, "resolve", lambda address: cluster.ClusterInfo(dashboard_url="http://10.0.0.5:8265"))
    with pytest.raises(SpecError, match=r"cluster at http://10.0.0.5:8265 \(ORCH_ADDRESS\); unset it"):
        cluster.up("cluster/mixed-sim.yaml", progress=lambda _: None)
    assert not (tmp_path / "cluster.json").exists()
