"""The allocator: ``plan(spec, snapshot) -> Plan | Infeasible``. PURE: no Ray, no I/O.

For each accelerator option of a job it computes the per-worker Ray resources
and looks for room for all workers at once (gang) on the free resources
(placeable), else on the total resources (queued), else rejects the option with
a specific reason. Ordered options take the first placeable one, ``any_of`` the
cheapest placeable one, ``auto`` the lowest price per peak TFLOP/s (SPEC.md; core/auto).
Where a job's runtime differs by type, the queue policy chooses among ``alternatives``
by expected finish instead (core/policy/finish.py): the allocator knows no runtimes.

Plan decisions (they shape what the runners ask of Ray Train):
- ``per_worker`` holds only amounts: ``CPU``, ``memory`` and ``GPU`` or ``TPU``.
  The accelerator *type* is a ``label_selector`` (``ray.io/accelerator-type``,
  or ``ray.io/tpu-slice-name`` for a slice), not a 0.001 ``accelerator_type:X``
  resource: labels say "which kind", resources say "how much".
- All workers of a job use one accelerator type; ``GPU:N`` (any type) picks the
  smallest type with room, so ``nodes`` and the label agree.
- ``workers`` is what is placed now (elastic jobs may start below their
  maximum); ``min_workers``/``max_workers`` are the range Ray Train may use.
- A slice's workers form one SPMD program, so ``accelerator_memory`` is checked
  against the whole slice's memory; for every other option, per worker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import ClassVar, Iterable, Mapping

from orchestrator.core import auto, hardware
from orchestrator.core.hardware import AcceleratorRequest
from orchestrator.core.placement import UNLIMITED, Fit, gib, quantity
from orchestrator.core.snapshot import EPS, ClusterSnapshot, QueueConfig, SliceGroup
from orchestrator.core.spec import JobSpec
from orchestrator.core.suggest import did_you_mean

@dataclass(frozen=True)
class TpuPlacement:
    """The TPU facts Ray Train needs: its accelerator type, topology and the slice taken."""

    accelerator_type: str  # Ray's name: "TPU-V4"
    topology: str
    chips_per_host: int  # chips of one chosen host
    pod_type: str | None = None  # "v4-16"
    slice_name: str | None = None  # whole-slice plans: the slice reserved
    head_resource: str | None = None  # "TPU-v4-16-head", on worker 0 of the slice


@dataclass(frozen=True)
class Plan:
    """Where and how a job runs (placeable now) or will run (queued). Read-only data."""

    job: str
    status: str  # "placeable" | "queued"
    accelerator: str  # the chosen option, concrete: "T4:1", "TPU-v4-16", "CPU"
    request: AcceleratorRequest  # the chosen option, concrete
    min_workers: int
    workers: int  # placed by this plan (one entry in ``nodes`` each)
    max_workers: int
    per_worker: Mapping[str, float]  # Ray resources of one worker
    nodes: tuple[str, ...]
    node_ids: tuple[str | None, ...]
    cost_per_hour: float | None  # None: a device of unknown list price
    placement: str  # pack | spread | strict_pack | strict_spread
    label_selector: Mapping[str, str] | None
    tpu: TpuPlacement | None
    rejected: tuple[tuple[str, str], ...]  # (option, reason)
    reasons: tuple[str, ...]
    why: str
    # A sweep's further trial slots, run at once with this one (``trial_plans``); the queue adds them.
    trials: tuple[Plan, ...] = ()

    def demand(self) -> dict[str, dict[str, float]]:
        """Resources this plan takes per node, its trial slots included, for
        ``ClusterSnapshot.allocate``/``release``."""
        return demand_of((part.nodes, part.per_worker) for part in (self, *self.trials))


def demand_of(groups: Iterable[tuple[Iterable[str], Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """node -> resources, for worker groups given as (a node name per worker, resources per worker)."""
    taken: dict[str, dict[str, float]] = {}
    for nodes, per_worker in groups:
        for name in nodes:
            node = taken.setdefault(name, {})
            for key, amount in per_worker.items():
                node[key] = node.get(key, 0.0) + amount
    return taken


@dataclass(frozen=True)
class Infeasible:
    """The job can never run on this cluster; ``reasons`` say why."""

    job: str
    rejected: tuple[tuple[str, str], ...]
    reasons: tuple[str, ...]
    status: ClassVar[str] = "infeasible"


@dataclass(frozen=True)
class _Group:
    """Candidate nodes for one concrete accelerator: classes of one type, or the slices of one type."""

    request: AcceleratorRequest  # concrete
    classes: tuple[int, ...]
    what: str  # for messages: "A100", "GPU", "TPU-v4", "" (any node)
    slices: tuple[SliceGroup, ...] = ()


@dataclass(frozen=True)
class _Outcome:
    """One option tried against the cluster: where it fits, or why not."""

    option: str
    status: str  # placeable | queued | rejected
    reason: str = ""
    request: AcceleratorRequest | None = None  # concrete
    fit: Fit | None = None
    positions: tuple[int, ...] = ()
    tpu_slice: SliceGroup | None = None
    cost_per_hour: float | None = 0.0


@dataclass(frozen=True)
class _Option:
    """An option resolved against what never changes (totals, labels, quota): half of a plan."""

    option: str
    groups: tuple[_Group, ...] = ()
    fit: Fit | None = None
    on_total: _Outcome | None = None  # queued where it runs once enough is free, or rejected and why


@dataclass(frozen=True)
class _Resolved:
    options: tuple[_Option, ...]
    choice: auto.Choice


# Distinct job shapes remembered per cluster layout; a bound, not a tuning knob.
_MEMO_LIMIT = 10_000


def plan(spec: JobSpec, snapshot: ClusterSnapshot) -> Plan | Infeasible:
    """Decide where ``spec`` runs on ``snapshot``: a Plan (placeable or queued) or Infeasible."""
    queue = snapshot.queues.get(spec.schedule.queue)
    if queue is None:
        return Infeasible(spec.name, (), (_unknown_queue(spec.schedule.queue, snapshot),))
    resolved = _resolve(spec, snapshot, queue)
    ordered = spec.resources.accelerator.ordered
    outcomes = []
    for option in resolved.options:
        outcomes.append(_try(option, snapshot))
        if outcomes[-1].status == "placeable" and ordered:
            break
    rejected = resolved.choice.rejected + tuple((o.option, o.reason) for o in outcomes if o.status == "rejected")
    chosen = _choose(outcomes, cheapest=not ordered)
    if chosen is None:
        return Infeasible(spec.name, rejected, tuple(f"{option}: {reason}" for option, reason in rejected))
    passed = tuple((o.option, _passed_over(o, chosen)) for o in outcomes if o.fit and o is not chosen)
    why = _why(chosen, resolved.choice, ordered, len(resolved.options))
    return _make_plan(spec, snapshot, chosen, rejected + passed, why)


def _resolve(spec: JobSpec, snapshot: ClusterSnapshot, queue: QueueConfig) -> _Resolved:
    """The options of ``spec`` resolved against totals and quota, remembered per job shape.

    Only free resources change between snapshots derived by allocate/release,
    so jobs of the same shape (sweeps, resubmissions) share this work.
    """
    key = (spec.resources, spec.hints.params, queue.name)
    memo = snapshot.index.memo
    resolved = memo.get(key)
    if resolved is None:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        choice = auto.expand(spec, snapshot)
        options = tuple(_resolve_option(spec, snapshot, queue, request) for request in choice.options)
        resolved = memo[key] = _Resolved(options, choice)
    return resolved


def alternatives(spec: JobSpec, snapshot: ClusterSnapshot) -> tuple[Plan, ...]:
    """``spec``'s plan on each accelerator type it may use, once per type (as the first option
    naming it): placeable where the free resources hold it, else queued where the cluster does;
    types it never fits are left out. The queue policy weighs them by expected finish
    (core/policy/finish.py) where the job's runtime differs by type."""
    queue = snapshot.queues.get(spec.schedule.queue)
    if queue is None:
        return ()
    resolved = _resolve(spec, snapshot, queue)
    rejected = resolved.choice.rejected + tuple((o.option, o.on_total.reason) for o in resolved.options
                                                if o.on_total.status == "rejected")
    plans: dict[str, Plan] = {}
    for option in resolved.options:
        for group in option.groups:
            outcome = _on(option, group, snapshot, True) or _on(option, group, snapshot, False)
            if outcome and str(outcome.request) not in plans:
                plans[str(outcome.request)] = _make_plan(spec, snapshot, outcome, rejected, resolved.choice.why)
    return tuple(plans.values())


def _try(option: _Option, snapshot: ClusterSnapshot) -> _Outcome:
    """The option on the free resources: placeable, else its queued (or rejected) outcome."""
    for group in option.groups:
        outcome = _on(option, group, snapshot, True)
        if outcome:
            return outcome
    return option.on_total


def _on(option: _Option, group: _Group, snapshot: ClusterSnapshot, use_free: bool) -> _Outcome | None:
    """The option on one group's nodes: placeable on the free resources (``use_free``), else
    queued on the totals; None when they do not hold it."""
    status = "placeable" if use_free else "queued"
    if group.slices:
        whole = next((s for s in group.slices if option.fit.holds_all(snapshot, s.members, use_free)), None)
        if whole is None:
            return None
        return _placed(option.option, status, group.request, option.fit, whole.members, whole)
    positions = option.fit.place(snapshot, group.classes, use_free)
    return _placed(option.option, status, group.request, option.fit, positions) if positions else None


def _choose(outcomes: list[_Outcome], cheapest: bool) -> _Outcome | None:
    for status in ("placeable", "queued"):
        fitting = [o for o in outcomes if o.status == status]
        if fitting and not cheapest:
            return fitting[0]
        if fitting:  # an unknown list price is no bargain: known prices first
            return min(fitting, key=lambda o: (o.cost_per_hour is None, o.cost_per_hour or 0.0))
    return None


def _passed_over(outcome: _Outcome, chosen: _Outcome) -> str:
    """Why an option that fits was not taken."""
    if outcome.status == "queued" and chosen.status == "placeable":
        return "fits the cluster but not the free resources now"
    return f"{outcome.status} at {hardware.price_text(outcome.cost_per_hour)}; {chosen.request} costs {hardware.price_text(chosen.cost_per_hour)}"


def _why(chosen: _Outcome, choice: auto.Choice, ordered: bool, count: int) -> str:
    accelerator, status = str(chosen.request), chosen.status
    if choice.why and chosen.request.kind == "cpu":
        text = choice.why
    elif choice.why:
        text = f"{choice.why}; {accelerator} is the first {status} of them{choice.sharding(chosen.request)}"
    elif not ordered:
        text = f"any_of: {chosen.option} is the cheapest {status} option at {hardware.price_text(chosen.cost_per_hour)}"
    elif count > 1:
        text = f"{chosen.option} is the first {status} option in order"
    else:
        text = f"{chosen.option} as requested"
    if accelerator != chosen.option:
        text += f"; placed as {accelerator}"
    if status == "queued":
        text += "; it fits the cluster but not the free resources now"
    return text


def _unknown_queue(name: str, snapshot: ClusterSnapshot) -> str:
    hint = did_you_mean(name, snapshot.queues, f" (queues: {', '.join(snapshot.queues)})")
    return f"no queue {name!r} on cluster {snapshot.name!r}{hint}"


# ---- one option, on the totals -----------------------------------------------------


def _resolve_option(spec: JobSpec, snapshot: ClusterSnapshot, queue: QueueConfig,
                    request: AcceleratorRequest) -> _Option:
    if request.kind == "slice":
        return _resolve_slice(spec, snapshot, queue, request)
    option = str(request)
    per_worker = _per_worker(spec, request, request.count)
    workers = spec.resources.workers
    groups = _groups(request, snapshot)
    cap, reason = _quota_cap(per_worker, workers.min, queue)
    if not groups:
        reason = reason or _missing(request, snapshot)
    if reason or not any(_memory_fits(spec, g.request) for g in groups):
        return _rejected(option, reason or _memory_reason(spec, groups))
    groups = tuple(g for g in groups if _memory_fits(spec, g.request))
    fit = Fit(per_worker, workers.min, min(workers.max, cap), spec.resources.placement)
    for group in groups:
        positions = fit.place(snapshot, group.classes, False)
        if positions:
            return _Option(option, groups, fit, _placed(option, "queued", group.request, fit, positions))
    # Per type: all workers of a job share one accelerator type.
    return _rejected(option, "; ".join(fit.diagnose(snapshot, g.classes, g.what) for g in groups))


def _missing(request: AcceleratorRequest, snapshot: ClusterSnapshot) -> str:
    """Why no node can take ``request``'s type; for a type only the spec names, what it may mean."""
    acc = request.type
    if acc is None:
        return f"no node has {request.kind.upper()}"
    if acc.source != hardware.NAMED:
        return f"no node has {acc.name}"
    custom = hardware.by_name(snapshot.custom_types())
    # Named by the spec only: say which field, as validation would for a catalog typo.
    return f"no node has {acc.name}; resources.accelerator: {hardware.unknown_type(acc.name, custom)}"


def _rejected(option: str, reason: str) -> _Option:
    return _Option(option, on_total=_Outcome(option, "rejected", reason))


def _per_worker(spec: JobSpec, request: AcceleratorRequest, devices: int) -> dict[str, float]:
    resources = {hardware.CPU: spec.resources.cpus, hardware.MEMORY: spec.resources.memory}
    if request.kind in ("tpu", "slice"):
        resources[hardware.TPU] = devices
    elif request.kind == "gpu":
        resources[request.type.resource if request.type else hardware.GPU] = devices
    return resources


def _groups(request: AcceleratorRequest, snapshot: ClusterSnapshot) -> list[_Group]:
    """Candidate node groups in preference order, one per concrete accelerator type."""
    index = snapshot.index
    if request.kind == "cpu":
        return [_Group(request, index.all_classes, "")] if index.all_classes else []
    if request.kind == "gpu" and request.type is None:
        groups = []
        for ray_type in index.gpu_types:
            classes = index.by_type[ray_type]
            acc = index.classes[classes[0]].accelerator
            groups.append(_Group(AcceleratorRequest("gpu", request.count, acc), classes, acc.name if acc else ray_type))
        return groups
    # A custom type as the spec spells it becomes the cluster's own (declared or learned) type.
    acc = index.types.get(request.type.name.lower()) if request.type.custom else request.type
    classes = index.by_type.get(acc.ray_type, ()) if acc else ()
    return [_Group(replace(request, type=acc), classes, acc.name)] if classes else []


def _memory_fits(spec: JobSpec, request: AcceleratorRequest) -> bool:
    need = spec.resources.accelerator_memory
    if not need or request.kind == "cpu":
        return True  # CPU work keeps its model in host memory, which ``memory`` covers
    memory = hardware.device_memory(request.type, request.count) if request.type else None
    return memory is not None and memory >= need  # unknown memory promises nothing


def _memory_reason(spec: JobSpec, groups: list[_Group]) -> str:
    """Why no group's devices hold ``accelerator_memory`` per worker."""
    have = "; ".join(f"{g.request.count} x {g.what} has {_memory_text(g.request)}" for g in groups if g.request.type)
    return f"needs {gib(spec.resources.accelerator_memory)} accelerator memory per worker; {have or 'type unknown'}"


def _memory_text(request: AcceleratorRequest) -> str:
    memory = hardware.device_memory(request.type, request.count)
    return "unknown memory (declare it in the cluster file's accelerators:)" if memory is None else gib(memory)


def _resolve_slice(spec: JobSpec, snapshot: ClusterSnapshot, queue: QueueConfig,
                   request: AcceleratorRequest) -> _Option:
    """A whole TPU slice: one worker on every host of one slice, never part of a slice."""
    tpu_slice, option = request.slice, str(request)
    per_worker = _per_worker(spec, request, tpu_slice.chips_per_host)
    slices = snapshot.index.slices.get(tpu_slice.pod_type, ())
    reason = _quota_cap(per_worker, tpu_slice.hosts, queue)[1] or _slice_reason(spec, snapshot, tpu_slice, slices)
    if reason:
        return _rejected(option, reason)
    fit = Fit(per_worker, tpu_slice.hosts, tpu_slice.hosts, "strict_spread")
    group = _Group(request, (), tpu_slice.accelerator.name, slices)
    whole = next((s for s in slices if fit.holds_all(snapshot, s.members, False)), None)
    if whole:
        return _Option(option, (group,), fit, _placed(option, "queued", request, fit, whole.members, whole))
    index = snapshot.index
    classes = tuple(c for c in index.by_type[tpu_slice.accelerator.ray_type]
                    if index.classes[c].pod_type == tpu_slice.pod_type)
    return _rejected(option, fit.diagnose(snapshot, classes, tpu_slice.accelerator.name))


def _slice_reason(spec: JobSpec, snapshot: ClusterSnapshot, tpu_slice: hardware.TpuSlice, slices) -> str:
    """Why a slice job can never run here, whatever is free ("" when it can)."""
    workers, need, hosts = spec.resources.workers, spec.resources.accelerator_memory, tpu_slice.hosts
    memory = hardware.device_memory(tpu_slice.accelerator, tpu_slice.chips)
    if (workers.min, workers.max) not in ((1, 1), (hosts, hosts)):
        return (f"{tpu_slice.name} runs one worker on each of its {hosts} hosts; workers: {workers} conflicts "
                f"(leave workers out or set it to {hosts})")
    if need and memory is not None and need > memory:
        return f"needs {gib(need)} accelerator memory, a {tpu_slice.name} slice has {gib(memory)}"
    if not slices:
        present = ", ".join(f"TPU-{pod}" for pod in snapshot.index.slices)
        return f"no {tpu_slice.name} slice on this cluster" + (f" (slices: {present})" if present else "")
    return ""


def _quota_cap(per_worker: Mapping[str, float], min_workers: int, queue: QueueConfig) -> tuple[int, str]:
    """How many workers the queue's quota plus borrow limit allows, or why not even ``min_workers``."""
    cap = UNLIMITED
    for key, amount in per_worker.items():
        limit = queue.limit(key)
        if limit is None or amount <= 0:
            continue
        fits = int((limit + EPS) // amount)
        if fits < min_workers:
            return 0, (f"needs {quantity(key, amount * min_workers)}; queue {queue.name} may hold at most "
                       f"{quantity(key, limit)}")
        cap = min(cap, fits)
    return cap, ""


def _placed(option: str, status: str, request: AcceleratorRequest, fit: Fit, positions,
            tpu_slice: SliceGroup | None = None) -> _Outcome:
    cost = hardware.cost_per_hour(request, fit.per_worker, len(positions))
    return _Outcome(option, status, "", request, fit, tuple(positions), tpu_slice, cost)


def _make_plan(spec: JobSpec, snapshot: ClusterSnapshot, chosen: _Outcome, rejected: tuple, why: str) -> Plan:
    request, fit = chosen.request, chosen.fit
    nodes = [snapshot.nodes[p] for p in chosen.positions]
    ray_type = nodes[0].ray_accelerator_type
    tpu = _tpu_placement(request, nodes[0], chosen.tpu_slice)
    if tpu and tpu.slice_name:
        selector = {hardware.LABEL_TPU_SLICE_NAME: tpu.slice_name}
    else:
        selector = {hardware.LABEL_ACCELERATOR_TYPE: ray_type} if request.kind != "cpu" and ray_type else None
    waiting = f"{request} x {len(nodes)} fits the cluster but not its free resources now"
    return Plan(
        job=spec.name, status=chosen.status, accelerator=str(request), request=request,
        min_workers=fit.min_workers, workers=len(nodes), max_workers=fit.max_workers,
        per_worker=dict(fit.per_worker), nodes=tuple(n.name for n in nodes), node_ids=tuple(n.node_id for n in nodes),
        cost_per_hour=chosen.cost_per_hour, placement=fit.strategy, label_selector=selector, tpu=tpu,
        rejected=rejected, reasons=(waiting,) if chosen.status == "queued" else (), why=why,
    )


def _tpu_placement(request: AcceleratorRequest, host, tpu_slice: SliceGroup | None) -> TpuPlacement | None:
    """TPU facts of the plan: the slice taken, or for single-host plans the first host's."""
    if request.kind == "slice":
        spec_slice = request.slice
        return TpuPlacement(spec_slice.accelerator.ray_type, tpu_slice.topology or spec_slice.topology,
                            spec_slice.chips_per_host, tpu_slice.pod_type, tpu_slice.name, spec_slice.head_resource)
    if request.kind != "tpu":
        return None
    labels = host.labels
    topology = (labels.get(hardware.LABEL_TPU_TOPOLOGY)
                or hardware.tpu_topology(request.count, request.type.topology_dims))
    return TpuPlacement(host.ray_accelerator_type, topology, int(host.total.get(hardware.TPU, request.count)),
                        labels.get(hardware.LABEL_TPU_POD_TYPE))




# ---- output --------------------------------------------------------------------


def to_json(result: Plan | Infeasible) -> dict:
    """``orch plan --json`` (SPEC.md section 3), plus the plan's extra fields."""
    rejected = [{"option": option, "reason": reason} for option, reason in result.rejected]
    if isinstance(result, Infeasible):
        return {"job": result.job, "status": result.status, "accelerator": None, "workers": 0, "per_worker": {},
                "nodes": [], "cost_per_hour": None, "rejected": rejected, "reasons": list(result.reasons)}
    return {
        "job": result.job, "status": result.status, "accelerator": result.accelerator, "workers": result.workers,
        "per_worker": {key: _number(value) for key, value in result.per_worker.items()},
        "nodes": list(result.nodes), "cost_per_hour": result.cost_per_hour, "rejected": rejected,
        "reasons": list(result.reasons),
        "min_workers": result.min_workers, "max_workers": result.max_workers, "placement": result.placement,
        "label_selector": dict(result.label_selector) if result.label_selector else None,
        "tpu": asdict(result.tpu) if result.tpu else None, "why": result.why, "node_ids": list(result.node_ids),
    }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
