"""The CLI habits of Ray and SkyPilot users (issue 21): `orch wait`, `orch list` filters,
`orch logs --tail`, `orch cancel` of several jobs, shell completion, `orch validate --json`,
`accelerator` as JSON, and the read commands answering from the kept job table when no
cluster runs. Against fakes and a job table in a temporary ORCH_HOME: no Ray."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from orchestrator.adapters.job_table import DB_NAME, KeptJobs
from orchestrator.cli import commands as cli, render
from orchestrator.client import api
from orchestrator.control.store import Store
from orchestrator.core.errors import ClusterUnavailable, JobNotFound, SpecError
from orchestrator.core.lifecycle import JobState
from orchestrator.core.spec import JobSpec
from orchestrator.client.view import job_view

SPEC = {"name": "digits", "framework": "torch", "entrypoint": "train.py:loop", "env": {"TOKEN": {"from_env": "TOKEN", "secret": True}},
        "resources": {"accelerator": ["H100:1", "A100:1"], "workers": 1},
        "checkpoint": {"metric": "acc", "mode": "max"}}


def run(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def _row(job: str, state: str = "QUEUED", queue: str = "default", name: str = "digits", **fields) -> dict:
    return {"id": job, "name": name, "state": state, "priority": 100, "queue": queue, "reason": None,
            "ray_submission_id": None, "attempt": 0, "submitted_at": 0.0, "started_at": None, "ended_at": None,
            "plan": None, "spec": SPEC, "history": [], "summary": None, **fields}


class FakeControl:
    def __init__(self, rows):
        self.rows = rows

    def list(self):
        return self.rows

    def get(self, job):
        return next(r for r in self.rows if job in (r["id"], r["name"]))

    def kept_log(self, job):
        return "one\ntwo\nthree\n"


def use(monkeypatch, rows):
    monkeypatch.setattr(api, "_clients", lambda address: (FakeControl(rows), None))
    monkeypatch.setattr(api, "_known_secrets", lambda row: frozenset())


# ---- accelerator as JSON -----------------------------------------------------------


@pytest.mark.parametrize("asked", ["H100:1", ["H100:1", "A100:1"], {"any_of": ["A100:1", "L4:1"]}])
def test_a_queued_jobs_accelerator_is_the_request_as_json_never_a_repr(asked):
    view = job_view(_row("j-1", spec={**SPEC, "resources": {"accelerator": asked, "workers": 1}}))
    assert json.loads(json.dumps(view.to_json()))["accelerator"] == asked


def test_a_planned_jobs_accelerator_is_the_plans_type_and_tables_write_it_as_the_spec_would():
    assert job_view(_row("j-1", plan={"accelerator": "T4:1", "workers": 1})).accelerator == "T4:1"
    assert render.accelerator_text(["H100:1", "A100:1"]) == "[H100:1, A100:1]"
    assert render.accelerator_text({"any_of": ["A100:1", "L4:1"]}) == "any_of [A100:1, L4:1]"
    console = cli._console()
    console.begin_capture()
    console.print(render.jobs_table([job_view(_row("j-1"))]))
    assert "[H100:1, A100:1] x 1" in console.end_capture()


# ---- list filters ------------------------------------------------------------------


ROWS = [_row("a-1", "SUCCEEDED", name="a"), _row("b-1", "RUNNING", "team", name="b"),
        _row("a-2", "RUNNING", name="a"), _row("c-1", "FAILED", "team", name="c")]


def test_list_filters_by_state_in_any_case_queue_name_glob_and_limit(monkeypatch):
    use(monkeypatch, ROWS)

    def jobs(**filters) -> list[str]:
        return [v.job for v in api.list_jobs(**filters)]

    assert jobs() == ["c-1", "a-2", "b-1", "a-1"]  # newest first
    assert jobs(states=["running"]) == ["a-2", "b-1"]
    assert jobs(states=["Running", "FAILED"], queue="team") == ["c-1", "b-1"]
    assert jobs(name="a") == ["a-2", "a-1"] and jobs(name="[ab]*") == ["a-2", "b-1", "a-1"]
    assert jobs(limit=1) == ["c-1"] and jobs(limit=0) == []
    done = run("list", "--state", "running", "--queue", "team", "--json")
    assert done.exit_code == 0 and [v["job"] for v in json.loads(done.stdout)] == ["b-1"]


def test_an_unknown_state_is_refused_with_the_did_you_mean(monkeypatch):
    use(monkeypatch, ROWS)
    with pytest.raises(SpecError, match="no state 'runing'; did you mean 'RUNNING'"):
        api.list_jobs(states=["runing"])
    done = run("list", "--state", "qeued")
    assert done.exit_code == 2 and "did you mean 'QUEUED'?" in done.stderr and "Traceback" not in done.output


# ---- logs --tail -------------------------------------------------------------------


def test_logs_tail_shows_the_last_lines(monkeypatch):
    use(monkeypatch, [_row("a-1", "SUCCEEDED", ray_submission_id="a-1", attempt=1)])
    assert api.logs("a-1", tail=2) == "two\nthree\n"
    assert api.logs("a-1", tail=0) == "" and api.logs("a-1") == "one\ntwo\nthree\n"
    done = run("logs", "a-1", "--tail", "1")
    assert done.exit_code == 0 and done.stdout == "three\n"
    assert run("logs", "a-1", "--tail", "-1").exit_code == 2  # typer's range check


def test_tail_of_a_followed_log_cuts_only_what_was_written_before():
    assert list(api._tail_first(iter(["a\nb\nc\n", "d\n", "e\n"]), 1)) == ["c\n", "d\n", "e\n"]


# ---- cancel and wait of several jobs --------------------------------------------------


def test_cancel_tries_every_job_and_fails_if_any_was_not_found(monkeypatch):
    tried = []

    def cancel(job, address=None):
        tried.append(job)
        if job == "nope":
            raise JobNotFound(job)
        return {"job": job, "state": "CANCELLED", "cancelled": job != "ended"}

    monkeypatch.setattr(api, "cancel", cancel)
    done = run("cancel", "a-1", "nope", "ended")
    assert tried == ["a-1", "nope", "ended"] and done.exit_code == 2
    assert "cancelled a-1" in done.stdout and "ended had already ended" in done.stdout
    assert "no job 'nope'" in done.stderr
    done = run("cancel", "a-1", "ended", "--json")
    assert done.exit_code == 0 and [d["job"] for d in json.loads(done.stdout)] == ["a-1", "ended"]
    done = run("cancel", "a-1", "--json")  # one job: one object, as before
    assert done.exit_code == 0 and json.loads(done.stdout) == {"job": "a-1", "state": "CANCELLED", "cancelled": True}


def test_wait_follows_every_job_and_exits_by_their_outcomes(monkeypatch):
    ended = {"a-1": "SUCCEEDED", "b-1": "SUCCEEDED", "c-1": "FAILED"}
    monkeypatch.setattr(render, "follow", lambda job, address, quiet=False: job_view(_row(job, ended[job])))
    done = run("wait", "a-1", "b-1", "--json")
    assert done.exit_code == 0 and [(v["job"], v["state"]) for v in json.loads(done.stdout)] == [
        ("a-1", "SUCCEEDED"), ("b-1", "SUCCEEDED")]
    assert run("wait", "a-1", "c-1").exit_code == 1


# ---- completion and validate --json ----------------------------------------------------


def test_shell_completion_can_be_installed():
    done = run("--help")
    assert done.exit_code == 0 and "--install-completion" in done.stdout
    done = run("--show-completion", "bash")
    assert done.exit_code == 0 and "complete" in done.stdout


def test_validate_json_says_ok_with_the_job(tmp_path):
    (tmp_path / "train.py").write_text("def loop(config): pass\n")
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\nentrypoint: train.py:loop\nresources: {workers: 2, accelerator: {any_of: [A100:1]}}\n")
    done = run("validate", str(spec), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"ok": True, "job": "x", "framework": "torch", "workers": 2,
                                       "accelerator": {"any_of": ["A100:1"]}, "pip": [], "excludes": [],
                                       "notes": [], "warnings": []}


def test_validate_json_gives_each_problem_as_an_object_and_the_text_is_unchanged(tmp_path):
    (tmp_path / "train.py").write_text("def loop(config): pass\n")
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\nentrypoint: train.py:loop\nresources: {workers: 0, acclerator: A100}\n")
    done = run("validate", str(spec), "--json", "--set", "schedule.priority=high")
    assert done.exit_code == 2 and done.stderr == ""
    errors = json.loads(done.stdout)["errors"]
    assert json.loads(done.stdout)["ok"] is False
    assert errors[0] == {"file": str(spec), "line": 3, "column": 22, "field": "resources.workers",
                         "message": "must be at least 1, got 0"}
    assert errors[1]["field"] == "resources.acclerator" and "did you mean 'accelerator'" in errors[1]["message"]
    assert errors[2]["file"] == "--set schedule.priority=high" and errors[2]["line"] is None
    assert errors[2]["field"] == "schedule.priority"
    text = run("validate", str(spec), "--set", "schedule.priority=high")
    assert text.exit_code == 2 and text.stdout == "" and "3 problems in" in text.stderr
    assert f"{spec}:3:22: resources.workers: must be at least 1, got 0" in text.stderr


def test_validate_json_of_an_unreadable_or_broken_file_gives_its_position(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("name: [x\n")
    done = run("validate", str(spec), "--json")
    (error,) = json.loads(done.stdout)["errors"]
    assert done.exit_code == 2 and (error["file"], error["line"], error["field"]) == (str(spec), 2, None)
    assert error["message"].startswith("invalid YAML")
    done = run("validate", str(tmp_path / "missing.yaml"), "--json")
    (error,) = json.loads(done.stdout)["errors"]
    assert error["file"] == str(tmp_path / "missing.yaml") and error["message"].startswith("cannot read")


# ---- read commands with the cluster down --------------------------------------------------


@pytest.fixture
def kept_home(tmp_path, monkeypatch):
    """A job table as a stopped local cluster leaves it: one queued job (with a secret), one that
    SUCCEEDED with its attempt's events and log kept."""
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORCH_ADDRESS", raising=False)
    store = Store(tmp_path / DB_NAME)
    spec = JobSpec.model_validate(SPEC)
    store.insert("digits-q", spec, SPEC, {"runtime_env": {}}, {"TOKEN": "s3cret"})
    store.insert("digits-s", spec, SPEC, {"runtime_env": {}})
    store.transition("digits-s", JobState.STARTING, plan={"accelerator": "CPU", "workers": 1}, attempt=1,
                     ray_submission_id="digits-s")
    store.transition("digits-s", JobState.RUNNING)
    store.keep_attempt("digits-s", 1, [{"event": "report", "metrics": {"acc": 0.9, "epoch": 1}},
                                       {"event": "result", "metrics": {"acc": 0.97}, "checkpoint": "/ckpt"}],
                       "epoch 1\ndone\n")
    store.transition("digits-s", JobState.SUCCEEDED)
    store.keep_summary("digits-s", {"metrics": {"acc": 0.97}, "worker_restarts": 0})
    store.close()
    return tmp_path


def test_list_and_status_read_the_kept_table_and_say_the_cluster_is_down(kept_home):
    done = run("list", "--json")
    assert done.exit_code == 0, done.output
    assert [(v["job"], v["state"], v["accelerator"]) for v in json.loads(done.stdout)] == [
        ("digits-s", "SUCCEEDED", "CPU"), ("digits-q", "QUEUED", ["H100:1", "A100:1"])]
    assert "no orch cluster is running" in done.stderr and str(kept_home / DB_NAME) in done.stderr
    done = run("status", "digits-s", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["metrics"] == {"acc": 0.9, "epoch": 1}
    assert set(json.loads(done.stdout)) == set(api.JobView.__dataclass_fields__)  # the same shape as live
    done = run("results", "digits", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["checkpoint"] == "/ckpt"
    assert "s3cret" not in run("status", "digits-q", "--json").output


def test_logs_read_the_kept_attempt_and_wait_says_a_job_cannot_end_while_down(kept_home):
    done = run("logs", "digits-s", "--tail", "1")
    assert done.exit_code == 0 and done.stdout == "done\n"
    done = run("wait", "digits-s", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)[0]["state"] == "SUCCEEDED"
    done = run("wait", "digits-q")
    assert done.exit_code == 3 and "cannot end while it is down" in done.stderr


def test_the_kept_table_is_read_only_and_missing_means_no_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORCH_ADDRESS", raising=False)
    assert KeptJobs.open(tmp_path) is None
    with pytest.raises(ClusterUnavailable, match="no cluster is running"):
        api.list_jobs()
    assert not (tmp_path / DB_NAME).exists()  # reading created nothing
    done = run("status", "x")
    assert done.exit_code == 3 and "orch up" in done.stderr
    Store(tmp_path / DB_NAME).close()
    with pytest.raises(JobNotFound):
        KeptJobs.open(tmp_path).get("x")
    with pytest.raises(Exception, match="readonly"):
        KeptJobs.open(tmp_path).table._db.execute("DELETE FROM jobs")


def test_cancel_needs_a_running_cluster(kept_home):
    done = run("cancel", "digits-q")
    assert done.exit_code == 3 and "no cluster is running" in done.stderr
