"""Autoscaler-aware planning: fits now, needs N new nodes of which types, or never fits. PURE.

A cluster started from a Ray launcher YAML or a KubeRay ``RayCluster`` grows: Ray's
autoscaler launches nodes of a configured type when a placement group pends, up to
the type's ``max_workers`` / ``maxReplicas``. ``load.launcher.autoscaling_snapshot``
reads that largest cluster (the *max-scale* snapshot); this module compares it with
the *live* snapshot (the nodes Ray has now, less what orch's jobs hold):

- ``assess(spec, live, max_scale)``: ``placeable`` (fits the free resources of the
  nodes that exist), ``autoscale`` (fits once the autoscaler adds ``new_nodes``, e.g.
  2 x A100 node of type a100-pool), ``queued`` (fits the cluster, but even with every
  node the autoscaler may still add it waits for running jobs) or ``infeasible``
  (never fits, even at max scale; ``reasons`` say why).
- ``feasible(spec, live, max_scale)``: the submit-time check. A job is refused only
  when it fits neither the nodes the cluster has nor the cluster at max scale.

New nodes are *virtual* nodes added to a snapshot, named ``<type>/new-<k>`` (``/`` never
appears in a real node's name), with the resources and labels of the max-scale node
they stand for. Live nodes are matched to node types by Ray's ``ray.io/node-group``
label (set from the autoscaler's node type), else by shape (accelerator type, device
count, TPU pod type, then CPUs and memory); the head is the max-scale snapshot's first
node and always exists. Per type, the autoscaler may add ``max - matched`` nodes,
whole multi-host slices only. CPU-only jobs are offered new nodes of device-less types
only, unless no device-less type could ever hold them: the autoscaler is not asked for
an A100 node to run CPU work.

Admission (``extend``, applied by the control plane after the queue policy's
``decide``). The policy plans on the nodes that exist; a job that does not fit their
free resources waits there. Ray's autoscaler only acts on demand it sees, a pending
placement group, so a job that needs new nodes must be *launched* to make them come:
its Ray job starts, its placement group pends, the autoscaler launches the nodes and
the workers start on them. ``extend`` walks the queued jobs the policy did not admit,
in the policy's order (priority, then submit order), and launches a job that needs new
nodes when:

- its queue's quota (plus what it may borrow) holds what the job takes, and
- no job ahead of it still waits for nodes of a type the job would use: "nothing it
  would block is waiting". A job ahead waits for nodes when it needs new ones but may
  not launch yet, or when it fits the cluster only once running jobs end, even with
  every node the autoscaler may still add (it would start on the new nodes and the
  freed ones together, so a lower job must not take the new ones first). Jobs ahead
  that wait only for their quota, or that fit the free resources and are held back by
  the policy (behind a reservation, CPUs kept for device jobs), block nothing. So the
  first job of the highest priority that needs a node type launches, and a stream of
  small jobs cannot starve a big one of the nodes it waits for.

A launched job's reason says it waits for nodes (``waits for the autoscaler: 2 x A100
node (a100-pool)``) until they join; a job that needs new nodes but may not launch yet
stays QUEUED with that reason and the job it waits behind. Launching on new nodes beats
preempting: preemptions the policy asked for such a job are dropped. The policy's
reasons are overridden only for jobs that need new nodes (launched, or waiting behind
a job ahead), and for jobs the policy, planning on the nodes that exist, calls unable
to run although they fit the cluster at max scale (they wait for running jobs, or for
their queue's quota).

Accounting (``account``): orch counts what its jobs hold from their plans. A plan that
names new nodes keeps holding them (as virtual nodes, still coming) until nodes of
that type join; then its demand is counted on a joined node of the type with room,
where Ray places the pending placement group. A running job's reason says it waits
for the autoscaler while any of its nodes are still coming.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from orchestrator.core import allocator
from orchestrator.core.allocator import Infeasible, Plan
from orchestrator.core.node_types import NEW, NodeType, at_max_scale, counts, describe, grow, node_types, type_of, virtual
from orchestrator.core.placement import quantity
from orchestrator.core.policy.quota import plan_totals, quota_room
from orchestrator.core.policy.reasons import waits_for
from orchestrator.core.policy.slots import with_trials
from orchestrator.core.policy.state import Decision, QueueState, QueuedJob, RunningJob
from orchestrator.core.snapshot import EPS, ClusterSnapshot, Node, QueueConfig
from orchestrator.core.spec import JobSpec

WAITS = "waits for the autoscaler"  # the prefix of reasons that say so

Demand = Mapping[str, Mapping[str, float]]  # node name -> resources (``Plan.demand()``)


# ---- one job -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """Where a job stands with the autoscaler; ``plan`` is against ``snapshot``."""

    status: str  # placeable | autoscale | queued | infeasible
    plan: Plan | None = None
    snapshot: ClusterSnapshot | None = None  # what ``plan`` is against (grown for autoscale)
    new_nodes: Mapping[str, int] = field(default_factory=dict)  # type -> new nodes (hosts) needed
    reasons: tuple[str, ...] = ()  # infeasible: why
    nodes_text: str | None = None  # autoscale: "2 x A100 node (a100-pool)"

    @property
    def reason(self) -> str | None:
        if self.status == "autoscale":
            return f"{WAITS}: {self.nodes_text}"
        if self.status == "infeasible":
            return "cannot run on this cluster, even at its largest: " + "; ".join(self.reasons)
        return None


def assess(spec: JobSpec, live: ClusterSnapshot, max_scale: ClusterSnapshot) -> Assessment:
    """Does ``spec`` fit ``live``'s free resources now, once the autoscaler adds nodes, or never?"""
    now = allocator.plan(spec, live)
    if isinstance(now, Plan) and now.status == "placeable":
        return Assessment("placeable", now, live)
    later: Plan | Infeasible | None = None
    grown = live
    cpu_only = all(option.kind == "cpu" for option in spec.resources.accelerator.options)
    for devices in ((False, True) if cpu_only else (True,)):
        grown = grow(live, max_scale, devices)
        later = allocator.plan(spec, grown)
        if isinstance(later, Plan):
            break  # queued on device-less types: CPU work waits for them rather than take a GPU node
    if isinstance(later, Plan) and later.status == "placeable":
        types = node_types(max_scale)
        present = {node.name for node in live.nodes}
        new = Counter(name.split(NEW, 1)[0] for name in set(later.nodes) if name not in present)
        if new:
            text = describe((n for n in later.nodes if n not in present), types)
            return Assessment("autoscale", later, grown, dict(new), nodes_text=text)
    if isinstance(later, Plan):
        return Assessment("queued", later, grown)
    if isinstance(now, Plan):
        return Assessment("queued", now, live)
    largest = allocator.plan(spec, at_max_scale(max_scale, live.queues))
    if isinstance(largest, Plan):  # fits only nodes orch could not match to a type: say it waits
        return Assessment("queued", largest, at_max_scale(max_scale, live.queues))
    return Assessment("infeasible", reasons=tuple(largest.reasons))


def feasible(spec: JobSpec, live: ClusterSnapshot, max_scale: ClusterSnapshot) -> Plan | Infeasible:
    """A plan on ``live``'s totals or, failing that, on the cluster at max scale; else why never.

    ``live`` should have every resource free: this asks "can it ever run", not "now".
    """
    now = allocator.plan(spec, live)
    if isinstance(now, Plan):
        return now
    largest = allocator.plan(spec, at_max_scale(max_scale, live.queues))
    if isinstance(largest, Plan):
        return largest
    where = (f"checked against the cluster at its largest: every node type of {max_scale.name} "
             f"at its max_workers / maxReplicas")
    return Infeasible(largest.job, largest.rejected, tuple(largest.reasons) + (where,))


# ---- what orch's running jobs hold ----------------------------------------------------------


@dataclass(frozen=True)
class Books:
    """The live cluster with orch's jobs' holds taken, including the new nodes they wait for."""

    snapshot: ClusterSnapshot  # live nodes, then the virtual nodes jobs still wait for
    demands: Mapping[str, Demand]  # job -> what it holds, on ``snapshot``'s nodes
    waiting: Mapping[str, str]  # job -> "1 x A100 node (a100)": new nodes it still waits for


def account(live: ClusterSnapshot, max_scale: ClusterSnapshot,
            holds: Iterable[tuple[str, Demand]]) -> Books:
    """Take each job's planned demand from ``live`` (all free), in order.

    Demand on nodes that exist is taken there. Demand on a new node goes to a node of
    its type that joined since and has room (Ray placed the pending group there), else
    stays on that virtual node, still coming. Demand on a node that left is dropped,
    as for clusters without an autoscaler.
    """
    types = node_types(max_scale)
    present = {node.name for node in live.nodes}
    demands: dict[str, dict[str, dict[str, float]]] = {}
    on_live: dict[str, dict[str, float]] = {}
    rest: list[tuple[str, str, Mapping[str, float]]] = []
    for job, demand in holds:
        mine = demands.setdefault(job, {})
        for name, resources in demand.items():
            if name in present:
                _add(mine, name, resources)
                _add(on_live, name, resources)
            elif NEW in name and name.split(NEW, 1)[0] in types:
                rest.append((job, name, resources))
    snapshot = live.allocate(on_live) if on_live else live
    joined: dict[str, list[str]] = {}
    for node in live.nodes:
        kind = type_of(node, types)
        if kind:
            joined.setdefault(kind, []).append(node.name)
    coming: dict[str, list[tuple[str, Mapping[str, float]]]] = {}
    for job, name, resources in rest:
        kind = name.split(NEW, 1)[0]
        target = next((n for n in joined.get(kind, ()) if _holds(snapshot.node(n).free, resources)), None)
        if target:
            snapshot = snapshot.allocate({target: resources})
            _add(demands[job], target, resources)
        else:
            coming.setdefault(name, []).append((job, resources))
    if coming:
        used, sample = counts(snapshot, types)
        extra = []
        for name in sorted(coming, key=_virtual_order):
            kind, k = types[name.split(NEW, 1)[0]], _virtual_order(name)[1]
            if used[kind.name] >= len(kind.nodes) or k < 0:
                continue  # beyond the type's maximum (or not a name orch gives): no such node comes
            used[kind.name] += 1
            total = sample[kind.name].total if kind.hosts == 1 and kind.name in sample else None
            extra.append(virtual(kind, k, total))
        snapshot = ClusterSnapshot(snapshot.name, snapshot.nodes + tuple(extra), snapshot.queues, snapshot.accelerators)
        for node in extra:
            for job, resources in coming[node.name]:
                if _holds(snapshot.node(node.name).free, resources):
                    snapshot = snapshot.allocate({node.name: resources})
                    _add(demands[job], node.name, resources)
    waiting = {job: text for job, demand in demands.items() if (text := describe(demand, types))}
    return Books(snapshot, demands, waiting)


def _virtual_order(name: str) -> tuple[str, int]:
    kind, k = name.split(NEW, 1)
    return kind, int(k) if k.isdigit() else -1


def _add(into: dict[str, dict[str, float]], name: str, resources: Mapping[str, float]) -> None:
    held = into.setdefault(name, {})
    for key, amount in resources.items():
        held[key] = held.get(key, 0.0) + amount


def _holds(free: Mapping[str, float], resources: Mapping[str, float]) -> bool:
    return all(free.get(key, 0.0) + EPS >= amount for key, amount in resources.items())


# ---- admission -------------------------------------------------------------------------------


def extend(state: QueueState, decision: Decision,
           max_scale: ClusterSnapshot) -> tuple[Decision, dict[str, str]]:
    """The policy's ``decision`` with the jobs that wait for new nodes launched where they may
    (module docstring), and their reasons.

    Returns the extended decision and, for admitted jobs whose plans name new nodes,
    the reason to show while they wait for them.
    """
    books = _Extension(state, decision, max_scale)
    for job in sorted(state.pending.in_arrival_order(), key=lambda j: (-j.priority, j.seq)):
        if job.id not in books.admitted:
            books.consider(job)
    return books.result()


class _Extension:
    """One ``extend``: what is free and used once the policy's admissions and the launches for
    new nodes so far are counted, and the decision as it grows, job by job in priority order."""

    def __init__(self, state: QueueState, decision: Decision, max_scale: ClusterSnapshot):
        self.state, self.max_scale, self.types = state, max_scale, node_types(max_scale)
        self.queues = state.snapshot.queues
        self.cohorts: dict[str, list[QueueConfig]] = {}
        for config in self.queues.values():
            if config.cohort:
                self.cohorts.setdefault(config.cohort, []).append(config)
        self.free = state.snapshot
        self.usage = {name: dict(held) for name, held in state.usage.items()}
        self.holders = list(state.running.values())  # for reasons: who holds the nodes a job waits for
        self.admit = list(decision.admit)
        for job_id, plan in self.admit:
            self._hold(state.pending.get(job_id), plan, self.free)
        self.notes = {job: f"{WAITS}: {text}" for job, plan in self.admit
                      if (text := describe(plan.demand(), self.types))}
        self.waiting = dict(decision.waiting)
        self.preempt, self.preempted_for = list(decision.preempt), dict(decision.preempted_for)
        self.admitted = {job for job, _ in self.admit}
        self.ahead: dict[str, str] = {}  # node type (or node) -> the first job still waiting for it
        self.seen: dict[tuple, Assessment] = {}  # by job shape, while ``free`` stays the same

    def consider(self, job: QueuedJob) -> None:
        """Launch ``job`` for new nodes if it may, else say why it waits (when the policy could not)."""
        key = (job.spec.resources, job.spec.hints.params, job.queue)
        found = self.seen.get(key)
        if found is None:
            found = self.seen[key] = assess(job.spec, self.free, self.max_scale)
        if found.status in ("infeasible", "placeable"):
            # Placeable: the policy holds it back (a reservation for a job ahead, CPUs kept for
            # jobs that want a node's devices, borrowing after owners): it waits for no new node.
            return
        over = _over_quota(self.queues.get(job.queue), found.plan, self.usage, self.cohorts)
        if over:  # waiting for quota blocks no one; the policy's reason stands unless it says "never"
            if not self._fits_now(job):
                self.waiting[job.id] = over
            return
        wanted = {_key(found.snapshot.node(name), self.types) for name in found.plan.nodes}
        blocker = next((self.ahead[k] for k in sorted(wanted) if k in self.ahead), None)
        if found.status == "autoscale" and blocker is None:
            self._launch(job, found)
            return
        if found.status == "autoscale" and job.id not in self.preempted_for.values():
            self.waiting[job.id] = f"{found.reason}; behind {blocker}, which waits ahead of it for the same nodes"
        elif found.status == "queued" and not self._fits_now(job):
            # The policy, planning on the nodes it was shown, says it cannot run; at max scale it can.
            self.waiting[job.id] = (f"{waits_for(found.plan, found.snapshot, self.holders)}; "
                                    f"even with every node the autoscaler may still add")
        for k in wanted:
            self.ahead.setdefault(k, job.id)

    def result(self) -> tuple[Decision, dict[str, str]]:
        waiting = {job: reason for job, reason in self.waiting.items() if job not in self.admitted}
        return Decision(self.admit, self.preempt, self.preempted_for, waiting), self.notes

    def _launch(self, job: QueuedJob, found: Assessment) -> None:
        """Admit ``job`` on the nodes its plan adds; the policy's preemptions for it are not needed."""
        plan = found.plan
        added = [found.snapshot.node(n) for n in dict.fromkeys(plan.nodes) if n not in self.free.index.position]
        grown = ClusterSnapshot(self.free.name, self.free.nodes + tuple(added), self.free.queues,
                                self.free.accelerators)
        if job.spec.sweep:
            plan = _with_trials(job, plan, grown, {n.name for n in added}, self.usage, self.queues)
        self._hold(job, plan, grown)
        self.admit.append((job.id, plan))
        self.admitted.add(job.id)
        self.notes[job.id] = f"{WAITS}: {describe(plan.demand(), self.types)}"
        self.waiting.pop(job.id, None)
        victims = {v for v, j in self.preempted_for.items() if j == job.id}
        self.preempt = [(v, why) for v, why in self.preempt if v not in victims]
        self.preempted_for = {v: j for v, j in self.preempted_for.items() if v not in victims}
        self.seen.clear()

    def _hold(self, job: QueuedJob, plan: Plan, on: ClusterSnapshot) -> None:
        """Count ``plan`` as held from ``on`` (what is free once it is): nodes, its queue's use, holders."""
        self.free = on.allocate(plan.demand())
        _use(self.usage, plan, job.queue)
        self.holders.append(RunningJob.from_plan(job.id, job.spec, plan))

    def _fits_now(self, job: QueuedJob) -> bool:
        """Whether ``job`` has a plan on the nodes the policy was shown (else the policy said "never")."""
        return isinstance(allocator.plan(job.spec, self.state.snapshot), Plan)


def _with_trials(job: QueuedJob, plan: Plan, grown: ClusterSnapshot, added: set[str],
                 usage: Mapping[str, Mapping[str, float]], queues: Mapping[str, QueueConfig]) -> Plan:
    """A sweep launched for new nodes: its trial slots on what those nodes leave, and no more
    nodes (the nodes that exist are the policy's to give, reservations and all)."""
    left = grown.allocate(plan.demand())
    left = left.with_free({node.name: {} for node in left.nodes if node.name not in added})
    return with_trials(job.spec, plan, left, usage.get(job.queue, {}), queues.get(job.queue))


def _use(usage: dict[str, dict[str, float]], plan: Plan, queue_name: str) -> None:
    held = usage.setdefault(queue_name, {})
    for key, amount in plan_totals(plan).items():
        held[key] = held.get(key, 0.0) + amount


def _over_quota(config: QueueConfig | None, plan: Plan, usage: Mapping[str, Mapping[str, float]],
                cohorts: Mapping[str, list[QueueConfig]]) -> str | None:
    """Why ``plan`` would take its queue past its quota (plus what it may borrow) now, else None."""
    if config is None or not config.quota:
        return None
    cohort = cohorts.get(config.cohort, []) if config.cohort else []
    need = plan_totals(plan)
    for key in config.quota:
        room = quota_room(config, key, usage, cohort)
        if need.get(key, 0.0) > EPS and need[key] > room + EPS:
            return (f"queue {config.name} may hold {quantity(key, max(room, 0.0), short=True)} more {key} now, "
                    f"it needs {quantity(key, need[key], short=True)} (on new nodes the autoscaler would add)")
    return None


def _key(node: Node, types: Mapping[str, NodeType]) -> str:
    """What a waiting job claims: a node type, or a node that matches none."""
    return type_of(node, types) or node.name

