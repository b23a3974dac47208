"""Durations in the spec (schedule.time_limit, hints.runtime) and the pure rules of time limits:
running time summed over attempts, when a limit is reached, and what a stop at the limit means."""

from __future__ import annotations

import pytest

from orchestrator.control.reconcile import Attempt, Move, limit_reached, moves
from orchestrator.core.forms import Duration, parse_duration
from orchestrator.core.lifecycle import JobState, running_s
from orchestrator.core.spec import json_schema
from orchestrator.load.spec import validate_text
from tests.unit.test_spec import BASE, one_problem, spec_of

TWO_H = Duration(seconds=7200, text="2h")


@pytest.mark.parametrize("text, seconds, shown", [
    ("90s", 90, "90s"), ("45m", 2700, "45m"), ("2h", 7200, "2h"), ("1.5d", 129600, "1.5d"), (" 2 h ", 7200, "2h"),
])
def test_durations_parse_once_into_seconds_and_keep_their_text(text, seconds, shown):
    parsed = parse_duration(text)
    assert (parsed.seconds, str(parsed)) == (seconds, shown)


@pytest.mark.parametrize("extra, field, words", [
    ("schedule: {time_limit: 2}", "schedule.time_limit", "2 has no unit; write a number with s, m, h or d"),
    ("schedule: {time_limit: 2x}", "schedule.time_limit", "'2x' is not a duration; write a number with s, m, h or d"),
    ("schedule: {time_limit: 2H}", "schedule.time_limit", "such as 90s, 45m, 2h or 1.5d"),
    ("schedule: {time_limit: -1h}", "schedule.time_limit", "'-1h' is not a duration"),
    ("schedule: {time_limit: 0s}", "schedule.time_limit", "'0s': a duration must be positive"),
    ("schedule: {time_limit: true}", "schedule.time_limit", "True is not a duration"),
    ("hints: {runtime: soon}", "hints.runtime", "'soon' is not a duration; write a number with s, m, h or d"),
    ("hints: {runtime: 45}", "hints.runtime", "45 has no unit"),
])
def test_bad_durations_name_the_field_the_value_and_the_form(extra, field, words):
    problem = one_problem(BASE + extra)
    assert f": {field}: " in problem and words in problem, problem
    assert "pydantic" not in problem and "Input should" not in problem


def test_duration_fields_default_to_none_round_trip_and_have_a_schema():
    assert (spec_of().schedule.time_limit, spec_of().hints.runtime) == (None, None)
    spec = spec_of("schedule: {time_limit: 2h}\nhints: {runtime: 45m}")
    assert (spec.schedule.time_limit.seconds, spec.hints.runtime.seconds) == (7200, 2700)
    dumped = spec.model_dump(mode="json")
    assert (dumped["schedule"]["time_limit"], dumped["hints"]["runtime"]) == ("2h", "45m")
    assert validate_text(BASE + "schedule: {time_limit: 2h}\nhints: {runtime: 45m}") == spec
    limit = json_schema()["$defs"]["Schedule"]["properties"]["time_limit"]
    assert {"type": "string"}.items() <= limit["anyOf"][0].items()


def _h(*entries: tuple[str, float]) -> list[dict]:
    return [{"state": state, "at": at, "reason": None} for state, at in entries]


RAN_TWICE = _h(("QUEUED", 0), ("STARTING", 5), ("RUNNING", 10), ("PREEMPTED", 3610), ("QUEUED", 3610),
               ("STARTING", 5000), ("RUNNING", 5010))


@pytest.mark.parametrize("history, now, seconds", [
    ([], 100, 0),
    (_h(("QUEUED", 0), ("STARTING", 5)), 100, 0),  # starting is not running
    (_h(("QUEUED", 0), ("STARTING", 5), ("RUNNING", 10)), 100, 90),
    (_h(("RUNNING", 10), ("SUCCEEDED", 70)), 1000, 60),
    (RAN_TWICE, 5010, 3600),  # the first attempt's hour; the queue in between does not count
    (RAN_TWICE, 8610, 7200),
])
def test_running_time_is_summed_over_attempts(history, now, seconds):
    assert running_s(history, now) == seconds


def test_a_limit_is_reached_at_its_running_time():
    assert not limit_reached(RAN_TWICE, 8609, TWO_H)
    assert limit_reached(RAN_TWICE, 8610, TWO_H)
    assert not limit_reached(RAN_TWICE, 10**9, None)


def _job(preempt: bool, limit: Duration | None = TWO_H, max_failures: int = 2) -> Attempt:
    return Attempt(JobState.RUNNING, "time limit 2h reached: stopping after its next checkpoint", RAN_TWICE, preempt,
                   max_failures, True, limit)


@pytest.mark.parametrize("job, info, now, expected", [
    # stopped at its limit: FAILED with the limit as written, not requeued
    (_job(True), {"status": "STOPPED"}, 8620,
     [Move(JobState.FAILED, "time limit 2h reached", {"ended_at": 8620, "preempt_requested_at": None})]),
    # a driver lost past the limit is not relaunched to be stopped again
    (_job(False), {"status": "FAILED", "driver_exit_code": 137}, 8620,
     [Move(JobState.FAILED, "time limit 2h reached", {"ended_at": 8620})]),
    # before the limit, a preemption requeues as ever, and a lost driver is relaunched
    (_job(True), {"status": "STOPPED"}, 6000,
     [Move(JobState.PREEMPTED, "time limit 2h reached: stopping after its next checkpoint",
           {"preempt_requested_at": None}),
      Move(JobState.QUEUED, "preempted; resumes from its last checkpoint")]),
    (_job(False), {"status": "FAILED", "driver_exit_code": 137}, 6000,
     [Move(JobState.QUEUED, "driver lost (exit code 137); resumes from its last checkpoint")]),
    # a loop that fails on its own, or succeeds in its grace, ends as it did
    (_job(False), {"status": "FAILED", "driver_exit_code": 1, "message": "ValueError: x"}, 8620,
     [Move(JobState.FAILED, "ValueError: x", {"ended_at": 8620})]),
    (_job(True), {"status": "SUCCEEDED"}, 8620, [Move(JobState.SUCCEEDED, None, {"ended_at": 8620})]),
    # no limit: a stop past two hours is a preemption
    (_job(True, limit=None), {"status": "STOPPED"}, 8620,
     [Move(JobState.PREEMPTED, "time limit 2h reached: stopping after its next checkpoint",
           {"preempt_requested_at": None}),
      Move(JobState.QUEUED, "preempted; resumes from its last checkpoint")]),
])
def test_what_a_stop_at_the_limit_means(job, info, now, expected):
    assert moves(job, info, [], now) == expected
