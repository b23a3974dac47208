"""A user's `orch` needs no Ray: submit (packaging the working_dir), list, status, logs, cancel
and wait, run as the CLI runs them against a control plane and a Ray Jobs API over HTTP, import
neither Ray nor a framework. The control plane (this test's process) stands in for the head's,
with Ray's Jobs API faked behind it and in front of the client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.control import service
from orchestrator.control.loop import Control
from orchestrator.control.store import Store
from tests.conftest import REPO
from tests.unit.test_control import Clock, FakeJobs, _snapshot

TOKEN = "stand-in-token"
HEAVY = ("ray", "torch", "tensorflow", "numpy", "pandas", "pyarrow", "grpc")
CLIENT = """
import json, sys, time
from typer.testing import CliRunner
from orchestrator.cli.commands import app
from orchestrator.client import api

def orch(*args):
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, (args, done.output, done.exception)
    return done.output

job = json.loads(orch("submit", sys.argv[1], "--json"))["job"]
while not api.status(job).ray_job_id:  # launched: status and logs read Ray's Jobs API too
    time.sleep(0.05)
orch("list")
orch("status", job)
orch("logs", job)
orch("cancel", job)
assert api.wait(job, poll_s=0.1).state == "CANCELLED"
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))))
"""


def _ray_jobs_api(fake: FakeJobs, asked: list[str]) -> ThreadingHTTPServer:
    """Ray's Jobs API as the client reads it: token auth on, the fake's jobs and logs."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            parts = self.path.strip("/").split("/")
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"error": "token"})
            if parts[:2] == ["api", "jobs"] and len(parts) == 4 and parts[3] == "logs" and parts[2] in fake.jobs:
                return self._answer(200, {"logs": fake.log.get(parts[2], "")})
            if parts[:2] == ["api", "jobs"] and len(parts) == 3 and parts[2] in fake.jobs:
                return self._answer(200, {**fake.jobs[parts[2]], "job_id": None})
            self._answer(404, {"error": "not found"})

        def _answer(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def head(tmp_path, monkeypatch):
    """A control plane stepping in the background as on the head, and Ray's Jobs API; their URLs."""
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    fake = FakeJobs()
    control = Control(Store(tmp_path / "control.db"), fake, _snapshot, str(tmp_path / "storage"), clock=Clock())
    asked: list[str] = []
    servers = [service.serve(control, 0), _ray_jobs_api(fake, asked)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()

    def loop():
        while not stop.wait(0.05):
            control.step()

    threading.Thread(target=loop, daemon=True).start()
    yield *(f"http://127.0.0.1:{server.server_address[1]}" for server in servers), asked
    stop.set()
    for server in servers:
        server.shutdown()
        server.server_close()


def _job(tmp_path, extra: str = ""):
    """A job spec file, its code beside it, with ``extra`` lines."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("def loop(config):\n    pass\n")
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: lean\nentrypoint: train.py:loop\nworking_dir: {code}\n{extra}")
    return spec


def _client_env(tmp_path, control_url: str, ray_url: str) -> dict[str, str]:
    """A client's environment: no Ray or orch address of this machine's, the head's URLs."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ORCH_HOME": str(tmp_path / "home"),
            "ORCH_ADDRESS": ray_url, "ORCH_CONTROL_ADDRESS": control_url, "RAY_AUTH_TOKEN": TOKEN}


def test_submit_list_status_logs_cancel_and_wait_import_no_ray(head, tmp_path):
    control_url, ray_url, asked = head
    spec = _job(tmp_path, "resources: {workers: 1, cpus: 1, memory: 1GiB}\n")
    env = _client_env(tmp_path, control_url, ray_url)
    done = subprocess.run([sys.executable, "-c", CLIENT, str(spec), ",".join(HEAVY)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert any(path.endswith("/logs") for path in asked)  # the job's log was read from Ray's Jobs API


SUBMIT_ONLY = """
import json, sys
from orchestrator.cli import main
spec, unwanted = sys.argv[1], sys.argv[2].split(",")
sys.argv = ["orch", "submit", spec, "--json"]
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
print(json.dumps(sorted(m for m in sys.modules if m in unwanted)))
"""
# What `orch submit` leaves to the control plane, or needs only for --dry-run, --wait or other
# commands: scripts start one process per job, often many at once, so each import costs them
# (issue 25: ten parallel clients on 2 cores).
# The spec's models (pydantic) are loaded in the control plane already: it checks the spec's text.
NOT_FOR_SUBMIT = ("orchestrator.core.allocator", "orchestrator.core.launch", "orchestrator.core.estimate",
                  "orchestrator.load.cluster", "orchestrator.adapters.job_table", "orchestrator.cli.render",
                  "orchestrator.core.spec", "orchestrator.load.spec", "pydantic", "pydantic_core",
                  "rich.table", "rich.live", "packaging.requirements")  # the last: only for pip: lines


def test_a_plain_submit_imports_only_what_it_uses(head, tmp_path):
    control_url, ray_url, _ = head
    spec = _job(tmp_path)
    env = _client_env(tmp_path, control_url, ray_url)
    done = subprocess.run([sys.executable, "-c", SUBMIT_ONLY, str(spec), ",".join(NOT_FOR_SUBMIT)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    *submitted, imported = done.stdout.strip().splitlines()
    assert json.loads("".join(submitted))["state"] == "QUEUED"
    assert json.loads(imported) == []


def test_a_bad_spec_submitted_lists_the_problems_validate_lists(head, tmp_path):
    """The control plane's problems (the models') and the client's (files, environment) in one
    list, exit 2, as `orch validate` prints them; nothing is queued."""
    control_url, ray_url, _ = head
    spec = _job(tmp_path, "resources: {workerz: 1}\nenv: {KEY: {from_env: NOT_SET_HERE}}\n")
    env = _client_env(tmp_path, control_url, ray_url)
    orch = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
    submitted, validated = (subprocess.run([*orch, command, str(spec), "--set", "entrypoint=gone.py:loop"],
                                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
                            for command in ("submit", "validate"))
    assert (submitted.returncode, validated.returncode) == (2, 2)
    assert submitted.stderr == validated.stderr
    assert "workerz" in submitted.stderr and "NOT_SET_HERE" in submitted.stderr and "gone.py" in submitted.stderr
    assert "Traceback" not in submitted.stderr
    assert json.loads(subprocess.run([*orch, "list", "--json"], cwd=REPO, env=env, capture_output=True,
                                     text=True, timeout=120).stdout) == []
