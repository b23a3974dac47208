"""The live queue's sense of time: runtimes and time limits in the policy's input, estimate-aware
backfill in the control plane, and the ETAs that `orch list`, `status` and `plan` show (a
forecast of the live state, control/etas.py), against a fake Ray and a fake clock."""

from __future__ import annotations

import pytest

from orchestrator.control.loop import Control
from orchestrator.control.service import job_json, jobs_json
from orchestrator.core.lifecycle import JobState
from tests.unit.test_control import _spec, control  # noqa: F401 (control: the fixture, a fake Ray and clock)


def _job(name: str, workers: int = 1, runtime: str | None = None, limit: str | None = None, priority: int = 100):
    spec = _spec(name, workers=workers, priority=priority)
    spec["hints"] = {"runtime": runtime, "params": None}
    spec["schedule"]["time_limit"] = limit
    return spec


def _submit(control: Control, name: str, **job) -> None:
    control.submit({"job": name, "spec": _job(name, **job), "request": {"runtime_env": {"env_vars": {}}},
                    "secrets": None})


def _running(control: Control, name: str, **job) -> None:
    """``name`` submitted, admitted and RUNNING from the clock's now."""
    _submit(control, name, **job)
    control.step()
    control.step()
    assert control.store.get(name).state == JobState.RUNNING


def _etas(control: Control) -> dict[str, dict]:
    control.etas.refresh(control.forecast_state())
    return {row["id"]: row["estimate"] for row in jobs_json(control)}


def test_a_job_queued_behind_a_running_one_has_an_eta_in_list_and_status(control):
    _running(control, "first", workers=2, runtime="10m")  # the whole node, until 1000 + 600
    _submit(control, "second", workers=2, runtime="5m")
    control.step()
    control.clock.now += 60
    found = _etas(control)
    assert found["first"] == {"runtime_s": 600.0, "basis": "hint", "start_in_s": 0.0, "end_in_s": 540.0}
    assert found["second"] == {"runtime_s": 300.0, "basis": "hint", "start_in_s": 540.0, "end_in_s": 840.0}
    assert job_json(control, control.store.get("second"))["estimate"]["start_in_s"] == 540.0


def test_a_job_with_no_estimate_leaves_the_eta_of_those_behind_it_unknown(control):
    _running(control, "first", workers=2)
    _submit(control, "second", workers=2, runtime="5m")
    found = _etas(control)
    assert found["first"]["end_in_s"] is None
    assert (found["second"]["start_in_s"], found["second"]["end_in_s"]) == (None, None)


def test_eta_is_null_before_the_first_forecast_and_for_ended_jobs(control):
    _running(control, "first", workers=2, runtime="10m")
    assert jobs_json(control)[0]["estimate"]["start_in_s"] is None  # no forecast ran yet
    control.jobs.end(control.store.get("first").ray_submission_id)
    control.step()
    assert control.store.get("first").state == JobState.SUCCEEDED
    assert control.forecast_state() is None  # nothing queued or running: nothing to forecast
    assert _etas(control)["first"]["start_in_s"] is None


def test_plan_says_when_a_job_submitted_now_would_start_and_end(control):
    _running(control, "first", workers=2, runtime="10m")
    _submit(control, "second", workers=2, runtime="5m")
    control.clock.now += 100
    planned = control.plan(_job("third", workers=2, runtime="2m"), eta=True)
    assert (planned["estimate"]["start_in_s"], planned["estimate"]["end_in_s"]) == (800.0, 920.0)
    higher = control.plan(_job("urgent", workers=2, runtime="2m", priority=500), eta=True)
    assert higher["estimate"]["start_in_s"] == 500.0  # ahead of "second", after "first" ends
    assert control.plan(_job("third", workers=2))["estimate"]["start_in_s"] is None  # a submit asks no ETA


def test_a_time_limit_counts_the_running_time_of_earlier_attempts(control):
    _running(control, "first", workers=2, limit="1h")
    control.clock.now += 1800
    state = control.forecast_state()
    assert state.running["first"].expected_end(state.now) == control.clock.now + 1800
    assert state.running["first"].estimate_s == 3600.0  # no history, no hint: the limit, as an upper bound


def test_a_short_job_backfills_onto_resources_reserved_for_a_waiting_one_only_with_an_estimate(control):
    _running(control, "first", workers=1, runtime="10m")  # 1 of 2 CPUs until 1600
    _submit(control, "big", workers=2, priority=200)  # waits for first's CPU: reserves the node
    _submit(control, "blind", workers=1)  # no estimate: may not take the reserved CPU
    control.step()
    assert control.store.get("blind").state == JobState.QUEUED
    _submit(control, "short", workers=1, runtime="5m")  # ends by 1300, before big's start at 1600
    control.step()
    assert control.store.get("short").state == JobState.STARTING
    assert control.store.get("big").state == JobState.QUEUED


def test_runtimes_from_history_are_read_once_per_ttl_and_follow_the_plan(control):
    _running(control, "digits", workers=2)
    control.clock.now += 120
    control.jobs.end(control.store.get("digits").ray_submission_id)
    control.step()
    control.runtimes._read_at = None  # as if the TTL ran out
    _submit(control, "again", workers=2)
    row = control.store.get("again")
    assert control.runtimes.of([row]) == {"again": None}  # another name: no history
    again = _job("digits", workers=2)
    control.submit({"job": "digits-2", "spec": again, "request": {"runtime_env": {"env_vars": {}}}, "secrets": None})
    assert control.runtimes.of([control.store.get("digits-2")]) == {"digits-2": 120.0}


@pytest.mark.parametrize("state,estimate,both,shown", [
    ("QUEUED", {"start_in_s": 540.0, "end_in_s": 840.0}, False, "starts in 9m00s"),
    ("QUEUED", {"start_in_s": 540.0, "end_in_s": 840.0}, True, "starts in 9m00s, ends in 14m00s"),
    ("QUEUED", {"start_in_s": 0.0, "end_in_s": None}, True, "starts now"),
    ("QUEUED", {"start_in_s": None, "end_in_s": None}, True, "-"),
    ("RUNNING", {"start_in_s": 0.0, "end_in_s": 4000.0}, False, "ends in 1h06m"),
    ("RUNNING", None, False, "-"),
    ("SUCCEEDED", {"start_in_s": None, "end_in_s": None}, False, ""),
])
def test_eta_text(state, estimate, both, shown):
    from orchestrator.cli.render import eta_text

    assert eta_text(estimate, state, both) == shown


def test_the_jobs_table_has_an_eta_column_and_the_status_panel_an_eta_row():
    from rich.console import Console

    from orchestrator.cli import render
    from tests.unit.test_user_text import _view

    view = _view(state="QUEUED", estimate={"runtime_s": 300.0, "basis": "hint", "start_in_s": 540.0,
                                           "end_in_s": 840.0})
    console = Console(width=200, record=True)
    console.print(render.jobs_table([view]))
    console.print(render.status_panel(view))
    text = console.export_text()
    assert "eta" in text.splitlines()[1] and "starts in 9m00s" in text
    assert "starts in 9m00s, ends in 14m00s" in text
