"""`orch status` per-worker figures: state API actors joined with their nodes' dashboard stats."""

from __future__ import annotations

from orchestrator.adapters.jobs import usage_rows, worker_role
from orchestrator.cli import render
from orchestrator.client import api

NOW = 1_000_000.0
GPU_NODE = {
    "now": NOW - 3,
    "workers": [{"pid": 11, "cpuPercent": 97.5, "memoryInfo": {"rss": 3 * 2**30}},
                {"pid": 12, "cpuPercent": 12.0, "memoryInfo": {"rss": 2**30}}],
    "gpus": [{"index": 0, "name": "NVIDIA H200", "utilizationGpu": 88, "memoryUsed": 30000, "memoryTotal": 143771,
              "processesPids": [{"pid": 11, "gpuMemoryUsage": 29000, "gpuUtilization": None}]},
             {"index": 1, "name": "NVIDIA H200", "utilizationGpu": 0, "memoryUsed": 0, "memoryTotal": 143771,
              "processesPids": None}],
    "tpus": [],
}
TPU_NODE = {"now": NOW - 1, "workers": [{"pid": 21, "cpuPercent": 40.0, "memoryInfo": {"rss": 2**29}}], "gpus": [],
            "tpus": [{"index": 0, "name": "tpu-0", "tensorcoreUtilization": 61.0, "hbmUtilization": 20.0}]}


def _actor(pid: int, node: str, cls: str = "RayTrainWorker") -> dict:
    return {"pid": pid, "node_id": node, "class_name": cls, "state": "ALIVE"}


def test_each_worker_gets_its_own_process_figures_and_gpus():
    rows = usage_rows([_actor(12, "gpu-node"), _actor(11, "gpu-node"), _actor(21, "tpu-node")],
                      {"gpu-node": GPU_NODE, "tpu-node": TPU_NODE}, NOW)
    assert [r["pid"] for r in rows] == [11, 12, 21]
    first, second, third = rows
    assert (first["cpu_percent"], first["rss_bytes"], first["figures_age_s"]) == (97.5, 3 * 2**30, 3.0)
    assert first["gpus"] == [{"index": 0, "name": "NVIDIA H200", "utilization_percent": 88,
                              "process_memory_mib": 29000, "memory_used_mib": 30000, "memory_total_mib": 143771}]
    assert second["gpus"] == []  # a process only shows the GPUs it uses
    assert third["node_tpus"] == [{"index": 0, "name": "tpu-0", "tensorcore_percent": 61.0, "hbm_percent": 20.0}]


def test_a_worker_the_agent_has_not_reported_yet_has_no_figures():
    [row] = usage_rows([_actor(99, "gpu-node")], {"gpu-node": GPU_NODE}, NOW)
    assert row["cpu_percent"] is None and row["rss_bytes"] is None and row["figures_age_s"] is None
    text = render._usage_text(row)
    assert "not reported yet" in text and "CPU" not in text


def test_roles_are_train_and_ray_data_workers_only():
    assert worker_role("RayTrainWorker") == "train"
    assert worker_role("MapWorker(MapBatches(Predictor))") == "predict"
    assert worker_role("TrainController") is None and worker_role("JobSupervisor") is None


def test_status_panel_shows_cpu_memory_and_gpu_per_worker():
    rows = usage_rows([_actor(11, "gpu-node")], {"gpu-node": GPU_NODE}, NOW)
    view = api.JobView(job="j-1", name="j", state="RUNNING", priority=100, queue="default", accelerator="H200:1",
                       workers="1", reason=None, restarts=0, metrics=None, ray_job_id="j-1", workers_usage=rows)
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render.status_panel(view))
    text = console.export_text()
    assert "CPU 98%" in text and "memory 3.0GiB" in text and "GPU 0 NVIDIA H200: 88%, 29000 MiB of 143771" in text


def test_status_panel_shows_a_sweeps_trial_slots():
    plan = {"accelerator": "A100:4", "workers": 1, "trials": [{"accelerator": "A100:4", "workers": 1},
                                                              {"accelerator": "T4:1", "workers": 1}]}
    view = api.JobView(job="s-1", name="s", state="RUNNING", priority=100, queue="default", accelerator="A100:4",
                       workers="1", reason=None, restarts=0, metrics=None, ray_job_id="s-1", plan=plan)
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render.status_panel(view))
    assert "3 at once (A100:4 x 1, A100:4 x 1, T4:1 x 1)" in console.export_text()
