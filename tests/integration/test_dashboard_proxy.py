"""`orch dashboard`'s proxy against a stand-in Ray dashboard on 127.0.0.1 (no Ray): it adds the
cluster token, listens on loopback only, passes method, path, query, status, headers and bodies
through (streamed), refuses other sites, and the command refuses a cluster whose token orch
does not have (exit 3, the reason). tests/integration/test_dashboard.py does it on real Ray.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.client import api
from orchestrator.core.errors import SpecError
from tests.conftest import ORCH, REPO

TOKEN = "s3cret-token"
JOBS = [{"submission_id": "digits-mlp-1a2b3c", "status": "RUNNING", "metadata": {"job_name": "digits-mlp"}}]


class Upstream:
    """A Ray dashboard as the proxy sees it: 401 without ``Bearer TOKEN``; records every
    request (method, path, headers, body). Routes: /api/version, /api/jobs/, /echo (the
    request as JSON, status 418, two cookies), /stream (no length: a piece, then one more
    once ``release`` is set), /redirect (to its own address)."""

    def __init__(self):
        self.seen: list[dict] = []
        self.release = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.seen.append({"method": self.command, "path": self.path, "body": body,
                                      "headers": dict(self.headers.items())})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, b"Unauthorized: Missing authentication token")
                route = self.path.split("?")[0]
                if route == "/stream":
                    return self._stream()
                if route == "/redirect":
                    return self._send(302, b"", [("Location", f"{upstream.url}/#/jobs")])
                if route == "/echo":
                    seen = {"method": self.command, "path": self.path, "body": body.decode()}
                    return self._send(418, json.dumps(seen).encode(), [("X-Custom", "kept"), ("Set-Cookie", "a=1"),
                                                                       ("Set-Cookie", "b=2")])
                answers = {"/api/version": {"ray_version": "2.60.0"}, "/api/jobs/": JOBS}
                if route not in answers:
                    return self._send(404, b"no route")
                self._send(200, json.dumps(answers[route]).encode(), [("Content-Type", "application/json")])

            do_POST = do_PUT = do_DELETE = do_GET

            def _send(self, status, body, headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self):
                self.send_response(200)
                self.send_header("Connection", "close")  # no length: the body ends when the connection does
                self.end_headers()
                self.wfile.write(b"first piece\n")
                self.wfile.flush()
                upstream.release.wait(10)
                self.wfile.write(b"second piece\n")
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """orch's home and the token as a user without a local cluster has them."""
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ORCH_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("ORCH_CONTROL_ADDRESS", raising=False)
    (tmp_path / "auth_token").write_text(TOKEN + "\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "auth_token"))
    return tmp_path


@pytest.fixture
def upstream():
    made = Upstream()
    yield made
    made.close()


@pytest.fixture
def proxy(home, upstream):
    served = api.dashboard(upstream.url)
    threading.Thread(target=served.serve_forever, daemon=True).start()
    yield served
    served.shutdown()
    served.server_close()


def _ask(proxy, method, path, body=None, headers=None):
    """(status, headers, body) of one request to the proxy, as a browser on this machine sends it."""
    port = proxy.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    answer = response.status, response.headers, response.read()
    connection.close()
    return answer


def test_the_jobs_api_answers_through_the_proxy_with_the_token_added(proxy, upstream):
    status, _, body = _ask(proxy, "GET", "/api/jobs/")
    assert status == 200 and json.loads(body)[0]["metadata"]["job_name"] == "digits-mlp"
    forwarded = upstream.seen[-1]
    assert forwarded["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert forwarded["headers"]["Host"] == upstream.url.removeprefix("http://")
    assert proxy.socket.getsockname()[0] == "127.0.0.1" and proxy.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_method_path_query_body_status_and_headers_pass_through(proxy, upstream, method):
    body = b"x" * 300_000 if method in ("POST", "PUT") else None  # several reads' worth, streamed on
    headers = {"Authorization": "Bearer the-browsers-own", "Connection": "keep-alive, X-Hop", "X-Hop": "1",
               "Proxy-Authorization": "Basic eA==", "X-Kept": "yes"}
    status, answer_headers, answer = _ask(proxy, method, "/echo?limit=5&filter=a%20b", body, headers)
    assert status == 418 and answer_headers["X-Custom"] == "kept"
    assert answer_headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    seen = json.loads(answer)
    assert (seen["method"], seen["path"], len(seen["body"])) == (method, "/echo?limit=5&filter=a%20b", len(body or b""))
    forwarded = upstream.seen[-1]["headers"]
    assert forwarded["Authorization"] == f"Bearer {TOKEN}" and forwarded["X-Kept"] == "yes"
    assert not {"X-Hop", "Proxy-Authorization"} & set(forwarded)


def test_a_body_without_a_length_streams_through_as_it_comes(proxy, upstream):
    connection = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
    connection.request("GET", "/stream")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert response.read1(1024) == b"first piece\n"  # before the dashboard has finished
    upstream.release.set()
    assert response.read() == b"second piece\n"
    connection.close()


def test_a_redirect_to_the_dashboard_points_at_the_proxy(proxy):
    status, headers, _ = _ask(proxy, "GET", "/redirect")
    assert status == 302 and headers["Location"] == f"{proxy.url}#/jobs"


@pytest.mark.parametrize("headers, why", [({"Host": "evil.example:80"}, "Host"),
                                          ({"Origin": "http://evil.example"}, "other sites")])
def test_requests_from_other_sites_are_refused_before_the_dashboard_sees_them(proxy, upstream, headers, why):
    before = len(upstream.seen)
    status, _, body = _ask(proxy, "POST", "/api/jobs/", b"{}", headers)
    assert status == 403 and why in body.decode() and len(upstream.seen) == before


def test_an_unreachable_dashboard_is_a_502_that_says_where(proxy, upstream):
    upstream.close()
    status, _, body = _ask(proxy, "GET", "/api/jobs/")
    assert status == 502 and upstream.url in body.decode()


def test_a_port_in_use_is_refused_with_what_to_do(home, upstream):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SpecError, match="leave --port out"):
            api.dashboard(upstream.url, taken.getsockname()[1])


def _orch(*args, env):
    """The `orch` command line and its environment: this checkout's orch, as a user runs it."""
    return [ORCH, *args], {**os.environ, **env, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("token, reason", [(None, "orch found none"), ("not-the-token", "not this cluster's token")])
def test_orch_dashboard_refuses_a_cluster_whose_token_it_does_not_have(home, upstream, token, reason):
    env = {"RAY_AUTH_TOKEN_PATH": str(home / "no-such-file")} if token is None else {"RAY_AUTH_TOKEN": token}
    for extra in ([], ["--print-token"]):
        command, full_env = _orch("dashboard", "--address", upstream.url, *extra, env=env)
        done = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 3 and reason in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert done.stdout == ""


def test_orch_dashboard_prints_the_token_it_checked(home, upstream):
    command, env = _orch("dashboard", "--address", upstream.url, "--print-token", env={})
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and done.stdout == TOKEN + "\n", done.stderr


def test_orch_dashboard_serves_until_ctrl_c_and_exits_130_quietly(home, upstream):
    command, env = _orch("dashboard", "--address", upstream.url, env={})
    running = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = running.stdout.readline()
        url = line.split()[1]
        assert url.startswith("http://127.0.0.1:"), line
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/api/jobs/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        running.send_signal(signal.SIGINT)
        _, err = running.communicate(timeout=30)
    assert running.returncode == 130 and "Traceback" not in err, err
