"""Autoscaler-aware planning on hand-built live snapshots and the shipped cluster configs: fits now,
needs N new nodes of which types, or never fits; the books of jobs waiting for nodes; admission.

Pure: no Ray. The control plane's use of it (submit, step) is in test_control.py.
"""

from __future__ import annotations

import subprocess
import sys

import yaml

from orchestrator.core import autoscale, node_types
from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.state import QueueState, QueuedJob
from orchestrator.core.snapshot import ClusterSnapshot, Node
from orchestrator.core.spec import JobSpec
from orchestrator.load import launcher as clusterconfig
from orchestrator.load.cluster import ClusterFile, snapshot_from_cluster
from tests.conftest import REPO

GIB = 1024**3
CLUSTER = REPO / "cluster"


def aws() -> ClusterSnapshot:
    # head; cpu: 4 x 16 CPUs; a10g: 2 x 4 A10G; a100: 1 x 8 A100
    return clusterconfig.snapshot_from_config(CLUSTER / "aws.yaml")


def job(name: str = "j", priority: int = 100, queue_name: str = "default", **resources) -> JobSpec:
    resources.setdefault("memory", "1GiB")
    return JobSpec.model_validate({"name": name, "entrypoint": "train.py:f", "resources": resources,
                                   "schedule": {"priority": priority, "queue": queue_name}})


def joined(max_scale: ClusterSnapshot, model: str, name: str, group: str | None = None) -> Node:
    """A live node as Ray reports one the autoscaler launched as ``model``'s type."""
    node = max_scale.node(model)
    labels = {**node.labels, **({"ray.io/node-group": group} if group else {})}
    return Node(name, dict(node.total), dict(node.total), labels)


def live(*nodes: Node, queues=None) -> ClusterSnapshot:
    head = Node("head-ip", {"CPU": 0.0, "memory": 16 * GIB, "orch_driver": 64.0},
                {"CPU": 0.0, "memory": 16 * GIB, "orch_driver": 64.0}, {})
    snap = ClusterSnapshot("orch", (head, *nodes))
    return ClusterSnapshot("orch", snap.nodes, queues) if queues else snap


def busy(snapshot: ClusterSnapshot, *names: str) -> ClusterSnapshot:
    return snapshot.allocate({n: dict(snapshot.node(n).total) for n in names})


# ---- node types and live nodes ------------------------------------------------------------


def test_node_types_come_from_the_max_scale_snapshot_head_first():
    types = node_types.node_types(aws())
    assert [(t.name, len(t.nodes), t.head, t.what) for t in types.values()] == [
        ("head", 1, True, "CPU node"), ("cpu", 4, False, "CPU node"), ("a10g", 2, False, "A10G node"),
        ("a100", 1, False, "A100 node")]
    tpu = node_types.node_types(clusterconfig.snapshot_from_config(CLUSTER / "kuberay.yaml"))["tpu-v4"]
    assert (tpu.hosts, tpu.what) == (2, "TPU-v4-16 slice")


def test_a_launcher_config_lists_its_head_first_wherever_the_file_has_it(tmp_path):
    data = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    types = data["available_node_types"]
    data["available_node_types"] = {k: types[k] for k in ("cpu", "a100", "head", "a10g")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert [t.name for t in node_types.node_types(clusterconfig.snapshot_from_config(path)).values()] == [
        "head", "cpu", "a100", "a10g"]


def test_only_configs_an_autoscaler_grows_have_a_max_scale_snapshot():
    assert clusterconfig.autoscaling_snapshot(CLUSTER / "gcp.yaml").node("a100-1").total["GPU"] == 4
    assert clusterconfig.autoscaling_snapshot(CLUSTER / "kuberay.yaml") is not None
    for orch_file in ("local.yaml", "mixed-sim.yaml", "cohorts.yaml"):  # every node exists
        assert clusterconfig.autoscaling_snapshot(CLUSTER / orch_file) is None


def test_live_nodes_are_matched_by_ray_node_group_label_else_by_shape():
    max_scale = aws()
    types = node_types.node_types(max_scale)
    assert node_types.type_of(joined(max_scale, "a10g-0", "x", group="a10g"), types) == "a10g"
    assert node_types.type_of(joined(max_scale, "cpu-0", "x", group="headgroup"), types) == "head"  # KubeRay
    assert node_types.type_of(joined(max_scale, "a100-0", "x"), types) == "a100"  # no label: by shape
    assert node_types.type_of(live().nodes[0], types) == "head"  # CPU 0, as declared
    odd = Node("x", {"CPU": 12.0, "memory": GIB}, {}, {})  # a CPU node of no configured size
    assert node_types.type_of(odd, types) == "cpu"  # the head is never a guess
    h100 = Node("x", {"CPU": 8.0, "GPU": 8.0, "memory": GIB}, {}, {"ray.io/accelerator-type": "H100"})
    assert node_types.type_of(h100, types) is None
    assert node_types.type_of(Node("a100/new-0", {}, {}), types) == "a100"


# ---- assess: fits now / needs new nodes / never ----------------------------------------------


def test_a_job_that_fits_the_free_nodes_now_needs_no_new_ones():
    snap = live(joined(aws(), "a10g-0", "g1", group="a10g"))
    found = autoscale.assess(job(accelerator="A10G:4"), snap, aws())
    assert (found.status, found.plan.nodes, found.reason) == ("placeable", ("g1",), None)


def test_a_job_that_needs_new_nodes_says_how_many_of_which_type():
    found = autoscale.assess(job(accelerator="A10G:4", workers=2), live(), aws())
    assert found.status == "autoscale" and found.new_nodes == {"a10g": 2}
    assert found.reason == "waits for the autoscaler: 2 x A10G node (a10g)"
    assert found.plan.nodes == ("a10g/new-0", "a10g/new-1") and found.plan.label_selector == {
        "ray.io/accelerator-type": "A10G"}


def test_new_nodes_add_to_the_existing_ones_up_to_the_types_maximum():
    g1 = joined(aws(), "a10g-0", "g1", group="a10g")
    found = autoscale.assess(job(accelerator="A10G:4", workers=2), live(g1), aws())
    assert (found.status, found.new_nodes, found.plan.nodes) == ("autoscale", {"a10g": 1}, ("g1", "a10g/new-0"))
    # A busy node of the type leaves one to add: two workers wait for the running job.
    found = autoscale.assess(job(accelerator="A10G:4", workers=2), busy(live(g1), "g1"), aws())
    assert found.status == "queued" and found.reason is None


def test_a_busy_cluster_grows_rather_than_waits():
    a100 = joined(aws(), "a100-0", "p4d", group="a100")
    found = autoscale.assess(job(accelerator="A10G:4"), busy(live(a100), "p4d"), aws())
    assert found.status == "autoscale" and found.new_nodes == {"a10g": 1}


def test_cpu_work_waits_for_cpu_nodes_rather_than_start_a_gpu_node():
    cpus = [joined(aws(), f"cpu-{i}", f"c{i}", group="cpu") for i in range(4)]  # the type at max_workers
    snap = busy(live(*cpus), *(n.name for n in cpus))
    assert autoscale.assess(job(cpus=8), snap, aws()).status == "queued"
    # A worker no CPU type can hold goes where one can: 40 CPUs is an A10G node's size.
    found = autoscale.assess(job(cpus=40), snap, aws())
    assert found.status == "autoscale" and found.new_nodes == {"a10g": 1}


def test_a_tpu_slice_comes_whole_with_its_own_slice_name():
    max_scale = clusterconfig.snapshot_from_config(CLUSTER / "kuberay.yaml")
    found = autoscale.assess(job(accelerator="TPU-v4-16"), live(), max_scale)
    assert found.reason == "waits for the autoscaler: 1 x TPU-v4-16 slice (tpu-v4)"
    hosts = [found.snapshot.node(n) for n in found.plan.nodes]
    assert [n.labels["ray.io/tpu-slice-name"] for n in hosts] == ["tpu-v4/new-slice-0"] * 2
    assert [n.labels["ray.io/tpu-worker-id"] for n in hosts] == ["0", "1"]
    assert "TPU-v4-16-head" in hosts[0].total and "TPU-v4-16-head" not in hosts[1].total


def test_a_job_no_node_type_can_hold_never_fits_and_says_why():
    found = autoscale.assess(job(accelerator="H100:1"), live(), aws())
    assert found.status == "infeasible" and "no node has H100" in found.reason
    refused = autoscale.feasible(job(accelerator="A100:8", workers=2), live(), aws())
    assert isinstance(refused, Infeasible)
    assert "needs 2 workers at once" in refused.reasons[0] and "at its largest" in refused.reasons[-1]
    assert isinstance(autoscale.feasible(job(accelerator="A100:8"), live(), aws()), Plan)


def test_the_head_is_never_a_node_to_add():
    found = autoscale.assess(job(cpus=1), ClusterSnapshot("orch", ()), aws())  # a head that matched nothing
    assert found.new_nodes == {"cpu": 1}


# ---- the books of jobs that wait for nodes ---------------------------------------------------


def test_demand_on_a_new_node_is_held_there_until_a_node_of_its_type_joins():
    demand = {"a10g/new-0": {"CPU": 1.0, "GPU": 4.0, "memory": float(GIB)}}
    books = autoscale.account(live(), aws(), [("j", demand)])
    assert books.snapshot.node("a10g/new-0").free["GPU"] == 0
    assert books.waiting == {"j": "1 x A10G node (a10g)"}
    # Still coming, it counts against the type's maximum: one more A10G node may be added.
    assert autoscale.assess(job(accelerator="A10G:4", workers=2), books.snapshot, aws()).status == "queued"
    g1 = joined(aws(), "a10g-0", "g1", group="a10g")
    books = autoscale.account(live(g1), aws(), [("j", demand), ("gone", {"left-node": {"CPU": 1.0}})])
    assert books.demands == {"j": {"g1": demand["a10g/new-0"]}, "gone": {}} and books.waiting == {}
    assert books.snapshot.node("g1").free["GPU"] == 0 and len(books.snapshot.nodes) == 2


# ---- admission: who launches to make nodes come ------------------------------------------------


def board(snapshot: ClusterSnapshot, *specs: JobSpec) -> QueueState:
    return QueueState.build(snapshot, [QueuedJob(s.name, s, i) for i, s in enumerate(specs)], [])


def test_jobs_that_need_new_nodes_launch_in_order_while_the_type_has_room():
    state = board(live(), job("a", accelerator="A10G:4"), job("b", accelerator="A10G:4"),
                  job("c", accelerator="A10G:4"))
    decision, notes = autoscale.extend(state, decide(state), aws())
    assert [j for j, _ in decision.admit] == ["a", "b"]
    assert notes == {"a": "waits for the autoscaler: 1 x A10G node (a10g)",
                     "b": "waits for the autoscaler: 1 x A10G node (a10g)"}
    assert decision.waiting["c"].startswith("waits for 4 x A10G: 0 free, 8 held by jobs a, b")


def test_a_job_waiting_ahead_for_a_type_keeps_later_jobs_off_its_new_nodes():
    g1 = joined(aws(), "a10g-0", "g1", group="a10g")
    snap = busy(live(g1), "g1")  # held by a job not in the queue: one A10G node left to add
    state = board(snap, job("pair", priority=200, accelerator="A10G:4", workers=2),
                  job("solo", accelerator="A10G:4"), job("cpu", cpus=4))
    decision, notes = autoscale.extend(state, decide(state), aws())
    assert [j for j, _ in decision.admit] == ["cpu"]
    assert notes == {"cpu": "waits for the autoscaler: 1 x CPU node (cpu)"}
    assert decision.waiting["solo"] == ("waits for the autoscaler: 1 x A10G node (a10g); "
                                        "behind pair, which waits ahead of it for the same nodes")


def test_a_job_over_its_quota_neither_launches_nor_blocks():
    queues = snapshot_from_cluster(ClusterFile.model_validate({
        "name": "q", "nodes": [{"name": "n", "cpus": 1, "memory": "1GiB"}],
        "queues": {"small": {"quota": {"GPU": 4}}}})).queues
    state = board(live(queues=queues), job("first", priority=300, queue_name="small", accelerator="A10G:4"),
                  job("second", priority=200, queue_name="small", accelerator="A10G:4"),
                  job("other", accelerator="A10G:4"))
    decision, _ = autoscale.extend(state, decide(state), aws())
    assert [j for j, _ in decision.admit] == ["first", "other"]  # second would block nothing: other launches
    assert decision.waiting["second"] == ("queue small may hold 0 more GPU now, it needs 4 "
                                          "(on new nodes the autoscaler would add)")


def test_autoscale_stays_pure():
    code = ("import sys; import orchestrator.core.autoscale; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
