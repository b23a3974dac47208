"""Every kind of plan translates to a Ray Train V2 ScalingConfig that Ray accepts."""

from __future__ import annotations

import pytest

from orchestrator.core.allocator import plan
from orchestrator.core.scaling import scaling_config_kwargs
from orchestrator.core.spec import JobSpec
from orchestrator.load.cluster import ClusterFile, snapshot_from_cluster

ray_train = pytest.importorskip("ray.train")

CLUSTER = snapshot_from_cluster(ClusterFile.model_validate({"name": "c", "nodes": [
    {"name": "head", "cpus": 4, "memory": "16GiB"},
    {"name": "a100", "count": 2, "cpus": 8, "memory": "64GiB", "accelerator": "A100:4"},
    {"name": "v4", "count": 2, "cpus": 8, "memory": "32GiB", "tpu_slice": "v4-16"},
    {"name": "v4host", "count": 2, "cpus": 8, "memory": "32GiB", "accelerator": "TPU-v4:4"},
    {"name": "v5e", "cpus": 8, "memory": "32GiB", "accelerator": "TPU-v5e:4"},
]}))

PLANS = {
    "cpu": {},
    "cpu-elastic-spread": {"workers": "1..3", "placement": "spread"},
    "gpu": {"accelerator": "A100:2", "workers": 2},
    "gpu-any-strict-pack": {"accelerator": "GPU:1", "workers": 2, "placement": "strict_pack"},
    "gpu-elastic": {"accelerator": "A100:1", "workers": "2..8"},
    "tpu-slice": {"accelerator": "TPU-v4-16"},
    "tpu-single-host-slice": {"accelerator": "TPU-v4-8"},
    "tpu-host": {"accelerator": "TPU-v4:4"},
    "tpu-hosts": {"accelerator": "TPU-v4:4", "workers": 2, "placement": "strict_spread"},
    "tpu-part-of-host": {"accelerator": "TPU-v5e:1"},
}


def planned(resources: dict):
    spec = JobSpec.model_validate({"name": "j", "entrypoint": "t.py:f", "resources": resources})
    result = plan(spec, CLUSTER)
    assert result.status == "placeable", result
    return result


@pytest.mark.parametrize("simulated", [False, True], ids=["real", "simulated"])
@pytest.mark.parametrize("kind", list(PLANS))
def test_ray_accepts_every_plan(kind, simulated):
    kwargs = scaling_config_kwargs(planned(PLANS[kind]), simulated=simulated)
    config = ray_train.ScalingConfig(**kwargs)
    assert config.num_workers == kwargs["num_workers"]


def test_gpu_type_goes_to_the_label_selector():
    kwargs = scaling_config_kwargs(planned(PLANS["gpu"]))
    assert kwargs == {"num_workers": 2, "use_gpu": True, "placement_strategy": "PACK",
                      "resources_per_worker": {"CPU": 1.0, "memory": 2 * 1024**3, "GPU": 2},
                      "label_selector": {"ray.io/accelerator-type": "A100"}}


def test_elastic_workers_are_a_range():
    assert scaling_config_kwargs(planned(PLANS["gpu-elastic"]))["num_workers"] == (2, 8)


def test_real_slice_lets_ray_train_reserve_it():
    kwargs = scaling_config_kwargs(planned(PLANS["tpu-slice"]))
    assert (kwargs["use_tpu"], kwargs["topology"], kwargs["accelerator_type"], kwargs["label_selector"]) == (
        True, "2x2x2", "TPU-V4", None)
    assert kwargs["resources_per_worker"]["TPU"] == 4


def test_simulated_slice_reserves_hosts_by_label_and_share():
    result = planned(PLANS["tpu-slice"])
    kwargs = scaling_config_kwargs(result, simulated=True)
    assert "use_tpu" not in kwargs and "TPU" not in kwargs["resources_per_worker"]
    assert kwargs["resources_per_worker"]["accelerator_type:TPU-V4"] == 1.0
    assert kwargs["label_selector"] == {"ray.io/tpu-slice-name": result.tpu.slice_name}
    assert kwargs["placement_strategy"] == "STRICT_SPREAD"


def test_simulated_part_of_a_host_reserves_its_share():
    kwargs = scaling_config_kwargs(planned(PLANS["tpu-part-of-host"]), simulated=True)
    assert kwargs["resources_per_worker"]["accelerator_type:TPU-V5LITEPOD"] == 0.25
    assert kwargs["label_selector"] == {"ray.io/accelerator-type": "TPU-V5LITEPOD"}


def test_real_single_host_keeps_its_label_selector():
    kwargs = scaling_config_kwargs(planned(PLANS["tpu-host"]))
    assert (kwargs["use_tpu"], kwargs["topology"]) == (True, None)
    assert kwargs["label_selector"] == {"ray.io/accelerator-type": "TPU-V4"}
