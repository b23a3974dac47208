"""`orch simulate` as a user runs it: SPEC.md's JSON, both policies, clear errors."""

from __future__ import annotations

import json

from tests.conftest import run_orch

ARGS = ("simulate", "--cluster", "cluster/cohorts.yaml", "--trace", "jobs/traces/example.jsonl")
KEYS = {"jobs", "makespan_s", "utilization", "mean_wait_s", "mean_jct_s", "by_class", "by_queue",
        "preemptions", "wall_s"}


def _report(*extra: str) -> dict:
    done = run_orch(*ARGS, "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_json_report_has_specs_fields_for_both_policies():
    orch, fifo = _report(), _report("--policy", "fifo")
    for report in (orch, fifo):
        assert KEYS <= set(report)
        assert report["jobs"] == 40 and 0 < report["utilization"] <= 1
        assert set(report["by_class"]) == {"cpu-small", "cpu-large", "gpu-small", "gpu-large", "tpu"}
    assert orch["policy"] == "orch" and fifo["policy"] == "fifo"
    assert orch["mean_wait_s"] < fifo["mean_wait_s"]  # priorities and backfill beat strict arrival order


def test_table_output_names_the_policy_and_classes():
    done = run_orch(*ARGS)
    assert done.returncode == 0, done.stderr
    assert "utilization" in done.stdout and "gpu-large" in done.stdout and "usage by queue" in done.stdout


def test_unknown_policy_and_bad_trace_exit_2_without_traceback(tmp_path):
    done = run_orch(*ARGS, "--policy", "lifo")
    assert done.returncode == 2 and "--policy" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "j1", "submit_s": -1}\n')  # two problems on one line
    done = run_orch("simulate", "--cluster", "cluster/cohorts.yaml", "--trace", str(bad))
    assert done.returncode == 2 and "runtime_s" in done.stderr and "Traceback" not in done.stderr
    assert f"problems in {bad}" in done.stderr


def test_a_trace_job_in_a_queue_the_cluster_lacks_exits_2_naming_it(tmp_path):
    trace = tmp_path / "typo.jsonl"
    trace.write_text('{"name": "j1", "class": "c", "submit_s": 0, "runtime_s": 5, "queue": "reserch", '
                     '"resources": {"cpus": 1}}\n')
    done = run_orch("simulate", "--cluster", "cluster/cohorts.yaml", "--trace", str(trace))
    assert done.returncode == 2 and "job j1: queue 'reserch'" in done.stderr and "did you mean 'research'?" in done.stderr


def test_estimates_modes_and_eta_error():
    """--estimates exact tells orch the true runtimes: starts are predicted at submit (eta_error);
    none is the runtime-blind policy, the default (trace) without estimate_s in the lines."""
    exact, blind, default = _report("--estimates", "exact"), _report("--estimates", "none"), _report()
    assert exact["eta_error"]["jobs"] > 0 and exact["eta_error"]["median_abs_s"] is not None
    assert blind["eta_error"]["jobs"] == 0
    assert {k: v for k, v in default.items() if k != "wall_s"} == {k: v for k, v in blind.items() if k != "wall_s"}
    done = run_orch(*ARGS, "--estimates", "exakt")
    assert done.returncode == 2 and "did you mean 'exact'?" in done.stderr and "Traceback" not in done.stderr
