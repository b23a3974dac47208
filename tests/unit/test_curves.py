"""Training curves (issue 21): the scalars and steps TensorBoard event files get from each
report, the series `orch status` and `orch results` draw as a sparkline and give in --json,
and `orch tensorboard`'s errors. Fakes for the control plane: no Ray, no processes."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
from typer.testing import CliRunner

from orchestrator.adapters import tensorboard as board
from orchestrator.cli import commands as cli, render
from orchestrator.client import api
from orchestrator.core import curves
from orchestrator.client.view import job_view

SPEC = {"name": "digits", "framework": "torch", "entrypoint": "train.py:loop", "env": {},
        "resources": {"accelerator": "CPU", "workers": 1}, "checkpoint": {"keep": 1, "metric": "acc", "mode": "max"}}
SWEEP = {**SPEC, "sweep": {"metric": "acc", "mode": "max", "samples": 2, "space": {"lr": {"uniform": [0.1, 1]}}}}


def _report(attempt=1, trial=None, **metrics) -> dict:
    return {"event": "report", "attempt": attempt, "metrics": metrics, "checkpoint": None,
            **({"trial_id": trial} if trial else {})}


# ---- what event files get -------------------------------------------------------------


def test_scalars_are_the_reports_numbers_nested_ones_flattened_text_and_flags_left_out():
    report = {"epoch": 3, "loss": 0.25, "acc": np.float32(0.5), "n": np.int64(7), "lr": {"body": 0.0, "head": 1e-3},
              "accelerator": "CPU", "best": True, "sizes": [1, 2], "diverged": float("nan")}
    found = curves.scalars(report)
    assert set(found) == {"epoch", "loss", "acc", "n", "lr/body", "lr/head", "diverged"}
    assert found["acc"] == 0.5 and found["n"] == 7.0 and found["lr/head"] == 1e-3
    assert math.isnan(found["diverged"])  # TensorBoard shows a NaN loss as one; it is news


@pytest.mark.parametrize("report, ordinal, expected", [
    ({"epoch": 4, "loss": 1.0}, 1, 4),               # a resumed run's epochs land where they belong
    ({"epoch": 4, "step": 900}, 1, 900),             # per-step reports: the step is finer
    ({"epoch": 2.0}, 5, 2),
    ({"loss": 1.0}, 5, 5),                           # nothing says: the report's number in the run
    ({"epoch": 1.5}, 5, 5), ({"epoch": True}, 5, 5), ({"epoch": "3"}, 5, 5),
])
def test_the_step_is_the_reports_own_step_or_epoch_else_its_number(report, ordinal, expected):
    assert curves.step(report, ordinal) == expected


# ---- the series -------------------------------------------------------------------------


def test_a_jobs_curve_is_its_metric_over_every_attempts_reports_with_gaps_for_nan():
    found = [_report(acc=0.5, loss=1.0), {"event": "start", "attempt": 1}, _report(loss=0.9),
             _report(acc=float("nan")), _report(2, acc=0.75)]
    assert curves.curve(found, "acc") == {"metric": "acc", "values": [0.5, None, 0.75], "trial_id": None}
    assert curves.curve(found, "missing") is None
    assert curves.curve(found, None) is None  # no checkpoint metric: no curve


def test_a_sweeps_curve_is_its_best_trials_by_latest_report_and_mode():
    found = [_report(trial="t1", acc=0.9), _report(trial="t2", acc=0.2), _report(trial="t1", acc=0.4),
             _report(trial="t2", acc=0.6), _report(trial="t3", acc=float("nan"))]
    assert curves.curve(found, "acc", "max", sweep=True) == {"metric": "acc", "values": [0.2, 0.6], "trial_id": "t2"}
    assert curves.curve(found, "acc", "min", sweep=True)["trial_id"] == "t1"
    assert curves.trial_curve(found, "acc", "t3") == {"metric": "acc", "values": [None], "trial_id": "t3"}
    assert curves.trial_curve(found, "acc", "t9")["values"] == []


# ---- the sparkline ------------------------------------------------------------------------


def test_sparkline_runs_lowest_to_highest_with_gaps_and_flat_lines_in_the_middle():
    assert render.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert render.sparkline([3.0, None, 1.0]) == "█ ▁"
    assert render.sparkline([2.0, 2.0]) == "▄▄"
    assert render.sparkline([]) == render.sparkline([None]) == ""


def test_sparkline_averages_long_series_into_its_width():
    line = render.sparkline([float(i) for i in range(1000)], width=10)
    assert len(line) == 10 and line[0] == "▁" and line[-1] == "█"
    assert render.sparkline([1.0, None, None, None], width=2) == "▄ "


def test_curve_text_says_metric_ends_and_count():
    text = render.curve_text({"metric": "acc", "values": [0.5, None, 0.75, 1.0], "trial_id": "t2"})
    assert text == "acc  ▁ ▅█  0.5 → 1 (min 0.5, max 1; 4 reports)  trial t2"


# ---- status and results ---------------------------------------------------------------------


def _row(spec=SPEC, state="SUCCEEDED") -> dict:
    return {"id": "digits-1", "name": "digits", "state": state, "priority": 100, "queue": "default", "reason": None,
            "ray_submission_id": "digits-1", "attempt": 1, "submitted_at": 0.0, "started_at": 1.0, "ended_at": 2.0,
            "plan": None, "spec": spec, "history": [], "summary": None}


class FakeControl:
    def __init__(self, row):
        self.row = row

    def get(self, job):
        return self.row


def use(monkeypatch, row, found):
    monkeypatch.setattr(api, "_clients", lambda address: (FakeControl(row), None))
    monkeypatch.setattr(api, "_events", lambda jobs, row: found)


def run(*args):
    return CliRunner().invoke(cli.app, list(args))


def test_status_and_results_show_the_curve_and_give_the_series_in_json(monkeypatch):
    use(monkeypatch, _row(), [_report(acc=0.25, epoch=0), _report(acc=0.5, epoch=1), _report(acc=1.0, epoch=2)])
    expected = {"metric": "acc", "values": [0.25, 0.5, 1.0], "trial_id": None}
    for command in ("status", "results"):
        done = run(command, "digits", "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["curve"] == expected
        shown = run(command, "digits")
        assert "curve" in shown.stdout and "acc  ▁▃█  0.25 → 1 (min 0.25, max 1; 3 reports)" in shown.stdout


def test_a_sweeps_results_give_each_trial_its_curve(monkeypatch):
    found = [_report(trial="t1", acc=0.25), _report(trial="t1", acc=0.5), _report(trial="t2", acc=0.75),
             {"event": "trial", "trial_id": "t1", "config": {"lr": 0.5}, "state": "TERMINATED", "metrics": {"acc": 0.5},
              "checkpoint": None, "accelerator": "CPU"},
             {"event": "trial", "trial_id": "t2", "config": {"lr": 0.2}, "state": "TERMINATED", "metrics": {"acc": 0.75},
              "checkpoint": None, "accelerator": "CPU"}]
    use(monkeypatch, _row(SWEEP), found)
    data = json.loads(run("results", "digits", "--json").stdout)
    assert data["curve"] == {"metric": "acc", "values": [0.75], "trial_id": "t2"} and data["best_trial"]["trial_id"] == "t2"
    assert [t["curve"]["values"] for t in data["trials"]] == [[0.25, 0.5], [0.75]]
    assert "▁█" in run("results", "digits").stdout


def test_a_job_without_a_checkpoint_metric_or_reports_has_no_curve(monkeypatch):
    use(monkeypatch, _row({**SPEC, "checkpoint": {"keep": 1, "metric": None, "mode": "min"}}), [_report(acc=0.5)])
    assert json.loads(run("status", "digits", "--json").stdout)["curve"] is None
    assert "curve" not in run("status", "digits").stdout
    assert job_view(_row()).curve is None  # `orch list` reads no logs


# ---- orch tensorboard's errors -----------------------------------------------------------------


def _announced(logdir) -> list[dict]:
    return [{"event": "tensorboard", "attempt": 1, "logdir": str(logdir)}, _report(acc=0.5)]


def test_tensorboard_not_installed_is_exit_1_with_how_to_install(monkeypatch, tmp_path):
    use(monkeypatch, _row(), _announced(tmp_path))
    monkeypatch.setattr(board, "installed", lambda: False)
    done = run("tensorboard", "digits")
    assert done.exit_code == 1 and "pip install tensorboard" in done.stderr and "Traceback" not in done.output


def test_tensorboard_of_a_job_without_event_files_is_exit_1_saying_why(monkeypatch, tmp_path):
    monkeypatch.setattr(board, "installed", lambda: True)
    use(monkeypatch, _row(state="QUEUED"), [])
    done = run("tensorboard", "digits")
    assert done.exit_code == 1 and "digits-1 has written no TensorBoard event files (it is QUEUED)" in done.stderr
    use(monkeypatch, _row(), _announced(tmp_path))  # announced, nothing reported yet
    done = run("tensorboard", "digits")
    assert done.exit_code == 1 and f"no TensorBoard event files in {tmp_path} yet" in done.stderr
    use(monkeypatch, _row(), _announced(tmp_path / "on-the-head"))
    done = run("tensorboard", "digits")
    assert done.exit_code == 1 and "not on this machine" in done.stderr and "Traceback" not in done.output


def test_tensorboard_on_a_taken_port_is_exit_2(monkeypatch, tmp_path):
    monkeypatch.setattr(board, "installed", lambda: True)
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"")
    use(monkeypatch, _row(), _announced(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run("tensorboard", "digits", "--port", str(taken.getsockname()[1]))
    assert done.exit_code == 2 and "cannot listen on 127.0.0.1" in done.stderr
