"""`orch ... --address` against a cluster this shell did not start (issues 8 and 9).

A second local Ray cluster, started by orch under its own ORCH_HOME, plays the
remote one; the CLI runs as a subprocess with another ORCH_HOME that has no
cluster.json, so all it knows is the dashboard URL (and, where the control
plane is not on the default port 8266, ORCH_CONTROL_ADDRESS). A cluster without
token auth is played by a stand-in in tests/integration/test_remote_address.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from orchestrator.adapters.ports import free_ports
from orchestrator.core.lifecycle import TERMINAL, JobState
from tests.conftest import ORCH, REPO, http_status, run_orch, where_job

pytestmark = pytest.mark.ray
ENDED = TERMINAL


@pytest.fixture(scope="module")
def remote(orch_home):
    """The "remote" cluster: a Ray head and its control plane, under their own ORCH_HOME
    (set only while starting and stopping it; the session's stays in force otherwise)."""
    from orchestrator.adapters import cluster

    home = tempfile.mkdtemp(prefix="orch-rem-")  # short: Ray's unix sockets live under it
    previous = os.environ["ORCH_HOME"]
    os.environ["ORCH_HOME"] = home
    try:
        info = cluster.up(progress=lambda _: None)
    finally:
        os.environ["ORCH_HOME"] = previous
    try:
        yield info
    finally:
        os.environ["ORCH_HOME"] = home
        try:
            cluster.down(progress=lambda _: None)
        finally:
            os.environ["ORCH_HOME"] = previous


@pytest.fixture
def client(remote, tmp_path):
    """A user's shell elsewhere: an ORCH_HOME without cluster.json, the cluster's token (the
    inherited one), and where the control plane listens (up() gave it a random port)."""
    home = tmp_path / "client-home"
    home.mkdir()
    return {"ORCH_HOME": str(home), "ORCH_ADDRESS": "", "ORCH_INSECURE": "",
            "ORCH_CONTROL_ADDRESS": remote.control_url}


def orch(remote, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_orch(*args, "--address", remote.dashboard_url, env=env, timeout=timeout)


def _job(tmp_path: Path, hold_s: float) -> Path:
    return where_job(tmp_path, "where-remote", {"workers": 1, "accelerator": "CPU"}, hold_s=hold_s)


def _status(remote, env: dict, job: str) -> dict:
    done = orch(remote, env, "status", job, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _wait_for(remote, env: dict, job: str, states: tuple[str, ...], timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = _status(remote, env, job)
        if view["state"] in states:
            return view
        assert view["state"] not in ENDED, f"{job} ended before reaching {states}: {view}"
        assert time.monotonic() < deadline, f"{job} not {states} within {timeout:.0f} s: {view}"
        time.sleep(2)


def _ids(remote, env: dict) -> list[str]:
    done = orch(remote, env, "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return [view["job"] for view in json.loads(done.stdout)]


def _clean_failure(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return " ".join(done.stderr.split())  # the console may wrap a long message


def test_submit_wait_list_logs_results_over_address(remote, client, tmp_path):
    done = orch(remote, client, "submit", str(_job(tmp_path, 0)), "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    view = json.loads(done.stdout)
    assert view["state"] == JobState.SUCCEEDED, view
    assert len(list((tmp_path / "out").glob("*rank-0.json"))) == 1  # it ran, on the remote cluster
    assert view["job"] in _ids(remote, client)

    logs = orch(remote, client, "logs", view["job"], "--follow", timeout=120)  # ended: prints all, returns
    assert logs.returncode == 0, logs.stderr
    assert "::orch::" in logs.stdout

    results = orch(remote, client, "results", view["job"], "--json")
    assert results.returncode == 0, results.stderr
    found = json.loads(results.stdout)
    assert found["state"] == JobState.SUCCEEDED and (found["metrics"] or {}).get("rank") == 0, found

    shown = orch(remote, client, "cluster", "--json")  # nodes and queues come from the control plane
    assert shown.returncode == 0, shown.stdout + shown.stderr
    report = json.loads(shown.stdout)
    assert report["dashboard"] == remote.dashboard_url and report["nodes"] and "default" in report["queues"]

    queued = _ids(remote, client)
    dry = orch(remote, client, "submit", str(_job(tmp_path, 0)), "--dry-run", "--json")  # planned by the head's
    assert dry.returncode == 0, dry.stdout + dry.stderr  # control plane: nothing read from the GCS here
    assert json.loads(dry.stdout)["plan"]["nodes"] == [n["name"] for n in report["nodes"]]
    assert _ids(remote, client) == queued  # and nothing queued


def test_logs_follow_a_running_job_until_it_is_cancelled(remote, client, tmp_path):
    done = orch(remote, client, "submit", str(_job(tmp_path, 600)), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)["job"]
    _wait_for(remote, client, job, (JobState.RUNNING,))

    log = tmp_path / "follow.log"
    with open(log, "w") as out:
        follow = subprocess.Popen([ORCH, "logs", job, "--follow", "--address", remote.dashboard_url],
                                  stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **client})
    try:
        time.sleep(5)
        assert follow.poll() is None, f"`orch logs --follow` ended while {job} runs: {log.read_text()}"
        cancelled = orch(remote, client, "cancel", job, "--json")
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert json.loads(cancelled.stdout)["state"] == JobState.CANCELLED
        assert follow.wait(timeout=120) == 0, log.read_text()  # it stops once Ray stopped the job
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert "Traceback" not in log.read_text()
    assert _status(remote, client, job)["state"] == JobState.CANCELLED


def test_wrong_or_missing_token_exits_3_and_submits_nothing(remote, client, tmp_path):
    from orchestrator.adapters.jobs import JobsClient

    jobs_before, ray_before = _ids(remote, client), {j["submission_id"] for j in JobsClient(remote).list()}
    wrong = {**client, "RAY_AUTH_TOKEN": "wrong"}
    message = _clean_failure(orch(remote, wrong, "submit", str(_job(tmp_path, 0))))
    assert "refused the auth token orch read from RAY_AUTH_TOKEN" in message, message
    assert "RAY_AUTH_TOKEN_PATH" in message
    for command in (["list"], ["status", "where-remote"], ["logs", "where-remote"], ["cancel", "where-remote"]):
        assert "refused the auth token" in _clean_failure(orch(remote, wrong, *command)), command

    missing = {**client, "RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no-token")}
    message = _clean_failure(orch(remote, missing, "submit", str(_job(tmp_path, 0))))
    assert "orch found none" in message and str(tmp_path / "no-token") in message, message

    assert _ids(remote, client) == jobs_before
    assert {j["submission_id"] for j in JobsClient(remote).list()} == ray_before
    assert not list((tmp_path / "out").glob("*.json"))


def test_no_control_plane_at_the_address_says_how_to_start_one(remote, client):
    nowhere = f"127.0.0.1:{free_ports(1)[0]}"
    message = _clean_failure(orch(remote, {**client, "ORCH_CONTROL_ADDRESS": nowhere}, "list"))
    assert "cannot reach the orch control plane" in message and "orch serve" in message, message


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_serve_runs_a_control_plane_for_a_head_it_finds_from_the_dashboard(remote, client, tmp_path):
    """`orch serve` on the head: finds the GCS from the dashboard's port, listens on loopback
    with the token required, and `--address` clients reach it on 8266 (or where told); with
    `--queues`, a cluster orch did not start has the file's queues, shown by `orch cluster`."""
    from orchestrator.adapters import auth

    default = _port_free(8266)  # the documented default, when nothing else on this machine holds it
    port = 8266 if default else free_ports(1)[0]
    serve_home = tempfile.mkdtemp(prefix="orch-srv-")
    log = tmp_path / "serve.log"
    queues = tmp_path / "queues.yaml"
    queues.write_text("queues:\n  team-a: {quota: {CPU: 1}, cohort: lab, borrow: {CPU: 1}}\n")
    with open(log, "w") as out:
        serve = subprocess.Popen([ORCH, "serve", "--address", remote.dashboard_url, "--port", str(port),
                                  "--home", serve_home, "--queues", str(queues)],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                 env={**os.environ, "ORCH_HOME": serve_home})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while http_status(f"{url}/health", auth.token()) != 200:
            assert serve.poll() is None, f"`orch serve` exited {serve.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"`orch serve` did not answer within 120 s: {log.read_text()}"
            time.sleep(0.5)
        assert http_status(f"{url}/jobs", None) == 401
        assert http_status(f"{url}/jobs", "wrong") == 401
        env = {**client, "ORCH_CONTROL_ADDRESS": "" if default else url}
        listed = orch(remote, env, "list", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert json.loads(listed.stdout) == []  # its own job table, in serve_home
        planned = orch(remote, env, "plan", str(_job(tmp_path, 0)), "--json")  # reads the GCS it found
        assert planned.returncode == 0, planned.stdout + planned.stderr + log.read_text()
        assert json.loads(planned.stdout)["status"] == "placeable"
        shown = orch(remote, env, "cluster", "--json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        team = json.loads(shown.stdout)["queues"]["team-a"]
        assert (team["quota"], team["cohort"], team["borrow"]) == ({"CPU": 1.0}, "lab", {"CPU": 1.0})
        assert "team-a" in orch(remote, env, "cluster").stdout
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    text = log.read_text()
    assert f"orch control plane on 127.0.0.1:{port}" in text, text
    assert f":{remote.gcs_address.rsplit(':', 1)[1]}" in text, text  # the remote cluster's GCS, not another's
    assert "Traceback" not in text, text
