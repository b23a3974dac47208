"""What users typed comes back as typed, and what scripts read has stable types: job ids in
URLs, markup and emoji codes in messages and tables, `workers`, `restarts`, node resources."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator.adapters.cluster import _user_resources
from orchestrator.cli import commands as cli, render
from orchestrator.client import api
from orchestrator.client.control_plane import _job_path
from orchestrator.core import events
from orchestrator.core.errors import JobNotFound
from orchestrator.client.view import job_view

PG = "6f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e"


def test_a_job_id_is_one_url_segment_and_an_empty_one_no_job():
    assert _job_path("digits-mlp/cancel") == "/jobs/digits-mlp%2Fcancel"
    for empty in ("", "  "):
        with pytest.raises(JobNotFound):
            _job_path(empty)


def test_messages_show_markup_and_emoji_codes_as_typed(tmp_path):
    spec = tmp_path / "[bold]job:fire:.yaml"
    spec.write_text("name: x\nentrypoint: train.py:loop\n")
    (tmp_path / "train.py").write_text("def loop(config): pass\n")
    done = CliRunner().invoke(cli.app, ["validate", str(spec)])
    assert done.exit_code == 0 and f"ok {spec}: job x" in done.output
    done = CliRunner().invoke(cli.app, ["validate", str(tmp_path / "[/]missing:rocket:.yaml")])
    assert done.exit_code == 2 and "[/]missing:rocket:.yaml" in done.output and "🚀" not in done.output


def _view(**fields) -> api.JobView:
    row = {"id": "j-1", "name": "j", "state": "FAILED", "priority": 100, "queue": "default", "reason": None,
           "ray_submission_id": "j-1", "attempt": 3, "submitted_at": 0.0, "started_at": None, "ended_at": None,
           "plan": None, "spec": {"resources": {"accelerator": "CPU", "workers": 2}, "framework": "torch"},
           "history": [{"state": "QUEUED", "reason": "driver lost (exit code -9); resumes from its last checkpoint"}]}
    return job_view({**row, **fields}, [{"event": "worker_failure", "attempt": 3, "causes": {}}])


def test_a_views_workers_is_a_number_and_restarts_count_drivers_too():
    view = _view()
    assert view.workers == 2 and view.restarts == 2  # one worker group restart, one lost driver
    elastic = _view(spec={"resources": {"accelerator": "CPU", "workers": "2..8"}, "framework": "torch"})
    assert elastic.workers == "2..8"  # not planned yet: the range asked for


def test_a_reason_with_brackets_shows_as_written_in_the_jobs_table():
    console = cli._console()  # as `orch list` prints
    console.begin_capture()
    console.print(render.jobs_table([_view(reason="KeyError: '[/]' at :fire:")]))
    assert "KeyError: '[/]' at :fire:" in console.end_capture()


def test_node_resources_leave_out_rays_placement_group_bookkeeping():
    assert _user_resources({"CPU": 2, "accelerator_type:A100": 1, f"CPU_group_0_{PG}": 1, f"bundle_group_{PG}": 1000,
                            f"memory_group_{PG}": 1e9, "node:127.0.0.1": 1, "object_store_memory": 1e9,
                            "team_group_slots": 4}) == {"CPU": 2, "accelerator_type:A100": 1, "team_group_slots": 4}


def test_a_sweeps_results_name_its_best_trial_and_config():
    sweep = {"metric": "loss", "mode": "min"}
    trials = [{"trial_id": "a", "config": {"lr": 0.1}, "metrics": {"loss": 0.5}},
              {"trial_id": "b", "config": {"lr": 0.01}, "metrics": {"loss": 0.2}},
              {"trial_id": "c", "config": {"lr": 1.0}, "metrics": {}},  # ended before it reported
              {"trial_id": "d", "config": {"lr": 9.0}, "metrics": {"loss": float("nan")}},  # diverged
              {"trial_id": "e", "config": {"lr": 2.0}, "metrics": {"loss": True}}]  # not a number to rank
    assert api._best_trial(trials, sweep) == {"trial_id": "b", "config": {"lr": 0.01}, "metrics": {"loss": 0.2}}
    assert api._best_trial(trials, {**sweep, "mode": "max"})["trial_id"] == "a"
    assert api._best_trial(trials, None) is None and api._best_trial([], sweep) is None


def test_the_jobs_table_shows_one_line_of_a_long_reason_and_counts_workers_in_words():
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad lr\n"
    console = cli._console()
    console.begin_capture()
    console.print(render.jobs_table([_view(reason=traceback), _view(reason="waits for 2 CPU\nand more")]))
    shown = console.end_capture()
    assert "... ValueError: bad lr" in shown and "waits for 2 CPU ..." in shown and "File" not in shown
    console.begin_capture()
    console.print(render.status_panel(_view(plan={"accelerator": "CPU", "workers": 1})))
    assert "CPU x 1 worker (torch)" in console.end_capture()


def test_a_predict_jobs_status_shows_the_metrics_of_its_result():
    row = {"id": "p-1", "name": "p", "state": "SUCCEEDED", "priority": 100, "queue": "default", "reason": None,
           "ray_submission_id": "p-1", "attempt": 1, "submitted_at": 0.0, "started_at": None, "ended_at": None,
           "plan": None, "history": [], "spec": {"resources": {"accelerator": "CPU", "workers": 1}, "framework": "torch"}}
    assert job_view(row, [{"event": "result", "metrics": {"rows": 450}}]).metrics == {"rows": 450}


def test_the_failure_that_ended_an_attempt_is_not_counted_as_a_restart():
    failure = {"event": "worker_failure", "causes": {}}
    found = [{**failure, "attempt": 1}, {**failure, "attempt": 1}, {**failure, "attempt": 1},  # RETRY, RETRY, RAISE
             {"event": "failed", "attempt": 1, "error": "boom"}]
    assert events.worker_restarts(found) == 2
    assert events.worker_restarts(found[:1] + found[3:]) == 0  # max_failures: 0
    assert events.worker_restarts(found[:2]) == 2  # still running: both were retried
    assert events.worker_restarts([{**failure, "attempt": 1}, {"event": "failed", "attempt": 2}]) == 1
