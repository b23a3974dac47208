"""Load: 200 submissions from 10 parallel clients, all accounted for and admitted by priority.

Slow (a few minutes on 2 cores): `make soak` runs it.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.core.lifecycle import JobState
from tests.conftest import REPO, record_figure, run_orch

pytestmark = [pytest.mark.ray, pytest.mark.soak]
SUBMISSIONS, CLIENTS, CHECKED = 200, 10, 6


def _spec(tmp_path: Path) -> Path:
    spec = {"name": "load", "entrypoint": "where.py:train_loop",
            "working_dir": str(REPO / "tests/data/placement"),
            "config": {"out": str(tmp_path), "hold_s": 1}, "resources": {"workers": 1, "memory": "256MiB"}}
    path = tmp_path / "load.yaml"
    path.write_text(json.dumps(spec))
    return path


def _submit(path: Path, priority: int) -> tuple[str, float]:
    started = time.perf_counter()
    done = run_orch("submit", str(path), "--json", "--set", f"schedule.priority={priority}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["job"], time.perf_counter() - started


def _admitted_at(view) -> float | None:
    return next((h["at"] for h in view.history if h["state"] == JobState.STARTING), None)


def test_200_parallel_submissions_are_all_kept_and_admitted_by_priority(local_cluster, tmp_path):
    from orchestrator.client import api

    blocker = json.loads(run_orch("submit", "jobs/digits/torch-mlp.yaml", "--json", "--set", "name=blocker",
                                  "--set", "config.epochs=50", "--set", "schedule.priority=1000").stdout)["job"]
    path = _spec(tmp_path)
    priorities = [random.Random(n).choice([10, 100, 500]) for n in range(SUBMISSIONS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        submitted = list(pool.map(lambda p: _submit(path, p), priorities))
    latencies = sorted(seconds for _, seconds in submitted)
    ids = [job for job, _ in submitted]

    views = {v.job: v for v in api.list_jobs()}
    kept = [job for job in ids if job in views]
    record_figure("load: submissions lost or doubled (200 from 10 parallel clients)",
                  len(ids) - len(set(kept)), "0", len(set(kept)) == len(ids) == SUBMISSIONS)
    p50, p99 = statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))]
    record_figure("load: submit latency p50 / p99 (s), 10 parallel clients", f"{p50:.2f} / {p99:.2f}",
                  "reported", True)
    assert len(set(kept)) == len(ids) == SUBMISSIONS

    api.cancel(blocker)
    deadline = time.monotonic() + 600
    try:
        while True:
            rows = [api.status(job) for job in ids]
            started = sorted((r for r in rows if _admitted_at(r)), key=_admitted_at)
            if len(started) >= CHECKED:
                break
            assert time.monotonic() < deadline, "jobs did not start"
            time.sleep(2)
        order = sorted(rows, key=lambda r: (-r.priority, ids.index(r.job)))
        expected = {r.job for r in order[:CHECKED]}
        first = {r.job for r in started[:CHECKED]}
        record_figure("load: jobs admitted out of priority order (first 6 after the blocker)",
                      len(first - expected), "0", first == expected)
        assert first == expected
    finally:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(api.cancel, ids))
