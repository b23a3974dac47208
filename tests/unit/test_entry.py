"""The driver's start (entry.py): a job Ray already stopped runs nothing."""

from __future__ import annotations

import json

import pytest

from orchestrator.core import events
from orchestrator.runners import entry


@pytest.fixture
def payload(monkeypatch):
    monkeypatch.setenv(entry.PAYLOAD_ENV, json.dumps({"job": "j", "spec": {}, "plan": {}, "secrets_file": None}))
    monkeypatch.setenv(entry.RAY_JOB_CONFIG_ENV, json.dumps({"metadata": {"job_submission_id": "j-attempt2"}}))


def test_a_driver_whose_job_ray_stopped_while_it_started_runs_nothing(payload, monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(entry, "_status_in_ray", lambda sid: asked.append(sid) or "STOPPED")
    import orchestrator.runners.train as train

    monkeypatch.setattr(train, "run", lambda payload: pytest.fail("the loop ran"))
    assert entry.main() == 0 and asked == ["j-attempt2"]
    [warning] = events.parse(capsys.readouterr().out)
    assert "stopped this job while its driver was starting" in warning["message"]


@pytest.mark.parametrize("config", [None, {}, {"metadata": {}}])
def test_outside_rays_jobs_api_nothing_is_asked(monkeypatch, config):
    if config is None:
        monkeypatch.delenv(entry.RAY_JOB_CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(entry.RAY_JOB_CONFIG_ENV, json.dumps(config))
    monkeypatch.setattr(entry, "_status_in_ray", lambda sid: pytest.fail("asked Ray"))
    assert entry._stopped_while_starting() is False


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", None])
def test_a_job_ray_has_not_stopped_runs(payload, monkeypatch, status):
    monkeypatch.setattr(entry, "_status_in_ray", lambda sid: status)
    assert entry._stopped_while_starting() is False
