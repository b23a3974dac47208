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
    bad.write_text('{"name": "j1", "submit_s": 0}\n')
    done = run_orch("simulate", "--cluster", "cluster/cohorts.yaml", "--trace", str(bad))
    assert done.returncode == 2 and "runtime_s" in done.stderr and "Traceback" not in done.stderr
