"""The accelerator catalog (every type Ray names) and custom types: declared in a cluster file,
learned from a live node's ``accelerator_type:X``, named by a spec; how plans, ``auto``, costs and
estimates treat unknown figures; the JSON ``orch cluster`` shows; queues files (``orch serve --queues``)."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from orchestrator.adapters import cluster as live
from orchestrator.cli import commands as cli, render
from orchestrator.control.loop import cluster_report
from orchestrator.core import catalog, estimate, hardware
from orchestrator.core.allocator import Infeasible, Plan, plan, to_json
from orchestrator.core.errors import SpecError
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec
from orchestrator.load.cluster import ClusterFile, load_cluster_file, load_queues_file, snapshot_from_cluster
from orchestrator.load.spec import validate_text
from tests.conftest import REPO

GIB = 1024**3
RTX = {"name": "RTX-4090", "family": "gpu", "memory": "24GiB", "bf16_tflops": 165, "fp32_tflops": 82.6}


def job(accelerator, **resources) -> JobSpec:
    return JobSpec.model_validate({"name": "j", "entrypoint": "train.py:f",
                                   "resources": {"accelerator": accelerator, **resources}})


def file_cluster(*nodes: dict, accelerators=(RTX,)) -> ClusterSnapshot:
    return snapshot_from_cluster(ClusterFile.model_validate(
        {"name": "c", "accelerators": list(accelerators), "nodes": list(nodes)}))


def _ray_names() -> dict[str, str]:
    """ray.util.accelerators' constants, read from Ray's source without importing Ray."""
    source = Path(importlib.util.find_spec("ray").origin).parent / "util" / "accelerators" / "accelerators.py"
    tree = ast.parse(source.read_text())
    return {node.targets[0].id: node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)}


# ---- the catalog ------------------------------------------------------------------


def test_every_type_ray_names_is_catalogued_or_said_not_to_be():
    names = _ray_names()
    assert len(names) > 60
    # A100-40G is Ray's manual label for the 40 GB A100: the catalog's A100 answers to it by name.
    missing = {v for v in names.values() if v not in hardware.BY_RAY_TYPE and v not in catalog.NOT_CATALOGUED}
    assert missing == {"A100-40G"} and hardware.lookup("A100-40G").name == "A100"


CATALOG_ROWS = [  # name, family, Ray resource, memory GiB, bf16 peak, $/device-hour
    ("P100", "gpu", "GPU", 16, 18.7, 1.46),
    ("K80", "gpu", "GPU", 12, None, None),
    ("L40S", "gpu", "GPU", 48, 362, 1.861),
    ("A10G", "gpu", "GPU", 24, 70, 1.006),
    ("H100", "gpu", "GPU", 80, 989, 11.06),
    ("B200", "gpu", "GPU", 180, 2250, None),
    ("MI300X", "gpu", "GPU", 192, 1307.4, None),
    ("GPU-Max-1550", "gpu", "GPU", 128, 838.9, None),
    ("Gaudi", "hpu", "HPU", 32, None, 1.639),
    ("aws-neuron-core", "neuron", "neuron_cores", None, None, None),
    ("TPU-v3", "tpu", "TPU", 32, 123, 2.00),
    ("Ascend910B", "npu", "NPU", 64, None, None),
]


@pytest.mark.parametrize("name, family, resource, memory, bf16, price", CATALOG_ROWS)
def test_catalog_rows(name, family, resource, memory, bf16, price):
    acc = hardware.lookup(name)
    assert (acc.name, acc.family, acc.resource, acc.memory_gib, acc.peak_bf16_tflops, acc.price_per_hour) == (
        name, family, resource, memory, bf16, price)
    assert not acc.custom and hardware.lookup(acc.ray_type) is acc  # Ray's spelling works too


def test_catalog_figures_are_positive_or_unknown_and_names_unambiguous():
    keys = [k for acc in catalog.CATALOG for k in {n.lower() for n in (acc.name, acc.ray_type, *acc.aliases)}]
    assert len(keys) == len(set(keys))
    for acc in catalog.CATALOG:
        for value in (acc.memory_gib, acc.peak_bf16_tflops, acc.peak_fp32_tflops, acc.price_per_hour):
            assert value is None or value > 0, acc
        assert acc.family in catalog.FAMILIES


@pytest.mark.parametrize("text, shown", [("mi300x:8", "MI300X:8"), ("AMD-Instinct-MI300X-OAM:1", "MI300X:1"),
                                         ("TPU-v2-32", "TPU-v2-32"), ("p100", "P100:1")])
def test_new_types_parse(text, shown):
    assert str(hardware.parse_accelerator(text)) == shown


def test_a_neuron_job_asks_ray_for_neuron_cores():
    snap = file_cluster({"name": "trn", "cpus": 8, "memory": "32GiB", "accelerator": "aws-neuron-core:2"},
                        accelerators=())
    assert snap.nodes[0].total["neuron_cores"] == 2 and snap.nodes[0].device_key == "neuron_cores"
    made = plan(job("neuron:2"), snap)
    assert isinstance(made, Plan) and made.per_worker["neuron_cores"] == 2 and made.cost_per_hour is None


# ---- custom types: a cluster file -----------------------------------------------------


def test_a_declared_type_is_planned_by_name_gpu_n_and_auto():
    snap = file_cluster({"name": "rtx", "cpus": 4, "memory": "16GiB", "accelerator": "RTX-4090:2"})
    node = snap.nodes[0]
    assert node.total["GPU"] == 2 and node.labels["ray.io/accelerator-type"] == "RTX-4090"
    assert node.total["accelerator_type:RTX-4090"] == 1
    for request in ("rtx-4090:2", "GPU:1", "auto"):
        made = plan(job(request, accelerator_memory="20GiB"), snap)
        assert isinstance(made, Plan) and made.accelerator.startswith("RTX-4090:"), (request, made)
        assert made.label_selector == {"ray.io/accelerator-type": "RTX-4090"}
    assert plan(job("RTX-4090:1", accelerator_memory="30GiB"), snap).reasons == (
        "RTX-4090:1: needs 30 GiB accelerator memory per worker; 1 x RTX-4090 has 24 GiB",)


def test_unknown_price_or_memory_ranks_after_known():
    snap = file_cluster({"name": "rtx", "cpus": 4, "memory": "16GiB", "accelerator": "RTX-4090:1"},
                        {"name": "t4", "cpus": 4, "memory": "16GiB", "accelerator": "T4:1"},
                        {"name": "a100", "cpus": 8, "memory": "64GiB", "accelerator": "A100:1"})
    auto = plan(job("auto", accelerator_memory="20GiB"), snap)
    assert auto.accelerator == "A100:1" and "RTX-4090:1 (price per TFLOP/s unknown)" in auto.why
    cheapest = plan(job({"any_of": ["RTX-4090:1", "A100:1"]}), snap)
    assert cheapest.accelerator == "A100:1"
    assert dict(cheapest.rejected)["RTX-4090:1"] == "placeable at an unknown price; A100:1 costs $2.93/h"


def test_declared_types_are_checked_at_their_place(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\naccelerators:\n  - {name: H100, family: gpu}\n  - {name: X1, family: tpu}\n"
                    "nodes:\n  - {name: n, cpus: 1, memory: 1GiB, accelerator: RTX-4080:1}\n")
    with pytest.raises(SpecError) as error:
        load_cluster_file(path)
    problems = error.value.problems
    assert any(":3:5: accelerators[0]: " in p and "'H100' is in orch's catalog" in p for p in problems), problems
    assert any(":4:" in p and "accelerators[1].family" in p for p in problems), problems
    assert any(":6:" in p and "nodes[0].accelerator" in p and "unknown accelerator type 'RTX-4080'" in p
               and "accelerators:" in p for p in problems), problems


# ---- custom types: learned from a live node ---------------------------------------------


def _state(name: str, total: dict, labels: dict | None = None):
    return SimpleNamespace(labels={"orch.io/node": name, **(labels or {})}, node_id=bytes.fromhex("ab" * 28),
                           total_resources=total, available_resources=total)


def test_a_live_node_of_a_type_nothing_describes_is_learned(monkeypatch):
    states = [_state("head", {"CPU": 4.0, "memory": 8.0 * GIB}),
              _state("gpu", {"CPU": 8.0, "memory": 32.0 * GIB, "GPU": 2.0, "accelerator_type:RTX-5090": 1.0})]
    monkeypatch.setattr(live, "_node_states", lambda gcs: states)
    snap = live.live_snapshot(live.ClusterInfo(dashboard_url="http://x", gcs_address="x:1"))
    learned = snap.custom_types()
    assert [(a.name, a.family, a.source, a.memory_gib, a.price_per_hour) for a in learned] == [
        ("RTX-5090", "gpu", "node", None, None)]
    for request in ("RTX-5090:2", "GPU:1", "auto"):
        made = plan(job(request), snap)
        assert isinstance(made, Plan) and made.accelerator.startswith("RTX-5090:"), (request, made)
    needs = plan(job("GPU:1", accelerator_memory="8GiB"), snap)
    assert isinstance(needs, Infeasible) and "unknown memory" in needs.reasons[0]


def test_declared_figures_reach_the_live_snapshot(monkeypatch):
    declared = {"RTX-4090": hardware.declared("RTX-4090", "gpu", memory_gib=24, bf16_tflops=165, price=0.5)}
    states = [_state("gpu", {"CPU": 8.0, "memory": 32.0 * GIB, "GPU": 1.0, "accelerator_type:RTX-4090": 1.0})]
    monkeypatch.setattr(live, "_node_states", lambda gcs: states)
    snap = live.live_snapshot(live.ClusterInfo(dashboard_url="http://x", gcs_address="x:1"), accelerators=declared)
    made = plan(job("RTX-4090:1", accelerator_memory="20GiB"), snap)
    assert made.cost_per_hour == 0.5 and made.request.type.source == "cluster file"


def test_a_type_the_cluster_lacks_is_infeasible_with_a_suggestion():
    snap = file_cluster({"name": "rtx", "cpus": 4, "memory": "16GiB", "accelerator": "RTX-4090:1"})
    found = plan(job("RTX-4080:1"), snap)
    assert isinstance(found, Infeasible)
    assert "no node has RTX-4080" in found.reasons[0] and "did you mean RTX-4090" in found.reasons[0]


# ---- specs, validate, estimates --------------------------------------------------------

SPEC = "name: j\nentrypoint: t.py:f\nresources: {accelerator: RTX-4090:1}\n"


def test_a_spec_names_a_custom_type_when_the_cluster_judges_it():
    assert validate_text(SPEC, types=None).resources.accelerator.options[0].type.source == "spec"
    with pytest.raises(SpecError) as error:
        validate_text(SPEC)  # the catalog alone: orch validate without --cluster
    assert "3:" in error.value.problems[0] and "did you mean RTX-PRO-6000" in error.value.problems[0]
    assert "accelerators:" in error.value.problems[0]
    custom = hardware.by_name([hardware.declared("RTX-4090", "gpu")])
    assert str(validate_text(SPEC, types=custom).resources.accelerator) == "RTX-4090:1"


def test_validate_cli_takes_the_cluster_files_types(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC)
    (tmp_path / "t.py").write_text("def f(config): pass\n")
    (tmp_path / "c.yaml").write_text(json.dumps({"name": "c", "accelerators": [RTX], "nodes": [
        {"name": "n", "cpus": 1, "memory": "1GiB", "accelerator": "RTX-4090:1"}]}))
    without = CliRunner().invoke(cli.app, ["validate", str(spec), "--json"])
    assert without.exit_code == 2 and "accelerators:" in json.loads(without.stdout)["errors"][0]["message"]
    with_file = CliRunner().invoke(cli.app, ["validate", str(spec), "--cluster", str(tmp_path / "c.yaml"), "--json"])
    assert with_file.exit_code == 0 and json.loads(with_file.stdout)["accelerator"] == "RTX-4090:1"


def test_estimates_do_not_scale_across_a_type_of_unknown_peak():
    assert estimate._throughput("H100:1", "bf16", 1, True) == ("tflops", 989)
    assert estimate._throughput("Gaudi:1", "bf16", 1, True) is None
    assert estimate._throughput("RTX-4090:1", "bf16", 1, True) is None


# ---- JSON shapes --------------------------------------------------------------------------


def test_cluster_json_lists_every_type_with_its_figures():
    snap = file_cluster({"name": "rtx", "cpus": 4, "memory": "16GiB", "accelerator": "RTX-4090:1"},
                        {"name": "t4", "cpus": 4, "memory": "16GiB", "accelerator": "T4:1"})
    report = cluster_report(snap, [])
    assert report["accelerators"] == [
        {"name": "RTX-4090", "family": "gpu", "ray_type": "RTX-4090", "resource": "GPU", "memory_gib": 24.0,
         "peak_bf16_tflops": 165, "peak_fp32_tflops": 82.6, "price_per_hour": None, "source": "cluster file"},
        {"name": "T4", "family": "gpu", "ray_type": "T4", "resource": "GPU", "memory_gib": 16,
         "peak_bf16_tflops": 65, "peak_fp32_tflops": 8.1, "price_per_hour": 0.35, "source": "catalog"}]
    assert json.loads(json.dumps(report)) == report
    table = render.accelerators_table({**report, "dashboard": "-"})
    assert table.row_count == 2


def test_plan_json_of_an_unknown_price_is_null():
    snap = file_cluster({"name": "rtx", "cpus": 4, "memory": "16GiB", "accelerator": "RTX-4090:1"})
    shown = to_json(plan(job("RTX-4090:1"), snap))
    assert shown["cost_per_hour"] is None and shown["accelerator"] == "RTX-4090:1"
    assert shown["per_worker"] == {"CPU": 1, "memory": 2 * GIB, "GPU": 1}


# ---- queues files (orch serve --queues) ---------------------------------------------------


def test_a_queues_file_is_a_queues_section_or_a_whole_cluster_file(tmp_path):
    alone = tmp_path / "queues.yaml"
    alone.write_text("queues:\n  team-a: {quota: {GPU: 8}, cohort: lab, borrow: {GPU: 4}}\n")
    queues = load_queues_file(alone)
    assert set(queues) == {"default", "team-a"} and queues["team-a"].limit("GPU") == 12
    whole = load_queues_file(REPO / "cluster" / "mixed-sim.yaml")
    assert set(whole) == {"default", "research", "prod"}


def test_a_bad_queues_file_names_the_place(tmp_path):
    path = tmp_path / "queues.yaml"
    path.write_text("queues:\n  team-a: {quota: {gpu: 8}}\nnodez: []\n")
    with pytest.raises(SpecError) as error:
        load_queues_file(path)
    problems = error.value.problems
    assert any(":2:" in p and "unknown resource 'gpu'" in p for p in problems), problems
    assert any(":3:1: nodez: unknown field" in p for p in problems), problems


def test_serve_passes_queues_to_the_control_plane(monkeypatch, tmp_path):
    from orchestrator.control import service

    queues = tmp_path / "queues.yaml"
    queues.write_text("queues:\n  team-a: {quota: {CPU: 2}}\n")
    seen = {}
    monkeypatch.setattr(service, "_require_token", lambda: None)
    monkeypatch.setattr(service, "_check_port", lambda host, port: None)
    monkeypatch.setattr(service.auth, "check_token_auth", lambda url: None)
    monkeypatch.setattr(service, "_check_gcs", lambda dashboard, gcs: 1)
    monkeypatch.setattr(service, "run", lambda args, say: seen.update(vars(args)))
    service.main_head(["--address", "http://127.0.0.1:1", "--gcs", "127.0.0.1:2", "--home", str(tmp_path),
                       "--queues", str(queues)])
    assert seen["queues"] == str(queues.resolve())
    queues.write_text("queues:\n  Team A: {}\n")
    with pytest.raises(SystemExit) as stopped:
        service.main_head(["--address", "http://127.0.0.1:1", "--queues", str(queues)])
    assert stopped.value.code == 2
