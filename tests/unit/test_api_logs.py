"""orch logs as the library serves it, against fakes of the control plane and Ray's Jobs API:
--follow waits for a queued job, stops when Ray will never run the attempt, follows a
preempted job into its next attempt; an ended job's log falls back to the kept copy."""

from __future__ import annotations

import pytest

from orchestrator.adapters.jobs import JobsClient
from orchestrator.client import api
from orchestrator.core.errors import JobNotFound


def row(state, submission=None, attempt=1):
    return {"id": "train-1", "state": state, "ray_submission_id": submission, "attempt": attempt,
            "reason": None, "spec": {"env": {}}}


class FakeControl:
    """Answers each get with the next row of a script (the last one from then on)."""

    def __init__(self, rows, kept=None):
        self.rows, self.kept = list(rows), kept

    def get(self, job):
        return self.rows.pop(0) if len(self.rows) > 1 else self.rows[0]

    def kept_log(self, job):
        return self.kept


class FakeRay:
    """Ray's view of each submission: a script of (status, log so far); unknown ids are 404."""

    follow_logs = JobsClient.follow_logs

    def __init__(self, scripts):
        self.scripts = {k: list(v) for k, v in scripts.items()}

    def _now(self, submission):
        if submission not in self.scripts:
            raise JobNotFound(submission)
        script = self.scripts[submission]
        return script.pop(0) if len(script) > 1 else script[0]

    def get(self, submission):
        return {"status": self._now(submission)[0]}

    def logs(self, submission):
        try:
            return self.scripts[submission][0][1]
        except KeyError:
            return ""


def use(monkeypatch, control, ray):
    monkeypatch.setattr(api, "_clients", lambda address: (control, ray))
    monkeypatch.setattr(api, "_known_secrets", lambda found: frozenset())


def follow(monkeypatch, control, ray):
    use(monkeypatch, control, ray)
    return "".join(api.logs("train-1", follow=True, poll_s=0))


def test_follow_ends_when_the_launch_was_refused(monkeypatch):
    control = FakeControl([row("QUEUED"), row("QUEUED"), row("FAILED", "train-1")])
    out = follow(monkeypatch, control, FakeRay({}))  # Ray never heard of train-1
    assert out.startswith("train-1 is QUEUED: no logs yet")


def test_follow_goes_on_into_the_attempt_after_a_preemption(monkeypatch):
    control = FakeControl([row("RUNNING", "train-1"), row("RUNNING", "train-1"), row("QUEUED", None, 2),
                           row("RUNNING", "train-1-attempt2", 2), row("SUCCEEDED", "train-1-attempt2", 2)])
    ray = FakeRay({"train-1": [("RUNNING", "epoch 1\n"), ("STOPPED", "epoch 1\nepoch 2\n")],
                   "train-1-attempt2": [("RUNNING", "resumed\n"), ("SUCCEEDED", "resumed\ndone\n")]})
    out = follow(monkeypatch, control, ray)
    assert out == "epoch 1\nepoch 2\n--- train-1: attempt 2 ---\nresumed\ndone\n"


@pytest.mark.parametrize("in_ray, kept, shown", [("key=s3cr3t\n", "key=***\n", "key=***\n"),
                                                 ("", "kept\n", "kept\n"), ("from ray\n", None, "from ray\n")])
def test_an_ended_job_shows_the_kept_masked_copy_else_rays_log(monkeypatch, in_ray, kept, shown):
    use(monkeypatch, FakeControl([row("SUCCEEDED", "train-1")], kept), FakeRay({"train-1": [("SUCCEEDED", in_ray)]}))
    assert api.logs("train-1") == shown
