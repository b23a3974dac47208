"""CPU work on accelerator nodes: the CPUs and memory that come with a node's free devices are
kept off CPU-only work while a queued job may use those devices (decide.py's docstring)."""

from __future__ import annotations

from orchestrator.core import allocator, hardware
from orchestrator.core.allocator import Plan
from orchestrator.core.policy.admission import QuotaGate
from orchestrator.core.policy.books import Books
from orchestrator.core.policy.quota import device_classes, device_share
from orchestrator.core.policy.reasons import device_kind
from orchestrator.core.policy.state import Pending, placeable
from orchestrator.core.snapshot import EPS, ClusterSnapshot
from orchestrator.core.spec import JobSpec


class DeviceGuard:
    """Where CPU work may go in one step: off the device share of the ``kept`` node classes."""

    def __init__(self, books: Books, pending: Pending, gate: QuotaGate):
        self.books = books
        self.kept = self._wanted(pending, gate)  # accelerator node classes whose devices queued jobs want
        self.spared: tuple[ClusterSnapshot, ClusterSnapshot] | None = None  # (view, view for CPU work)

    def _wanted(self, pending: Pending, gate: QuotaGate) -> set[int]:
        """Accelerator node classes whose devices some queued job may run on, its queue's quota permitting."""
        index = self.books.free.index
        wanted: set[int] = set()
        for resources, queues in pending.shapes():
            key = ("queue: device classes", resources)
            classes = index.memo.get(key)
            if classes is None:
                classes = index.memo[key] = device_classes(resources, index)
            if classes and not classes <= wanted and any(gate.may_hold(queue, resources) for queue in queues):
                wanted |= classes
        return wanted

    def takes_share(self, placed: Plan, free: ClusterSnapshot) -> list[str]:
        """Nodes where ``placed``, if CPU work, would take from ``free`` CPUs or memory that come
        with free devices that queued jobs want."""
        if not self.kept or device_kind(placed.per_worker) != hardware.CPU:
            return []
        index, taken = free.index, []
        for name, demand in placed.demand().items():
            pos = index.position[name]
            cid = index.class_of[pos]
            if cid in self.kept:
                node = free.nodes[pos]
                left = {key: node.free.get(key, 0.0) - amount for key, amount in demand.items()}
                share = device_share(index.classes[cid], node)
                if any(left.get(key, 0.0) < amount - EPS for key, amount in share.items()):
                    taken.append(name)
        return sorted(taken)

    def spared_view(self) -> ClusterSnapshot:
        """The view less what comes with the free devices of wanted accelerator nodes: where CPU work may go."""
        view = self.books.view
        if self.spared is None or self.spared[0] is not view:
            self.spared = (view, self.spare(view))
        return self.spared[1]

    def spare(self, free: ClusterSnapshot) -> ClusterSnapshot:
        """``free`` less the CPUs and memory that come with the free devices of wanted accelerator nodes."""
        index, spared = free.index, {}
        for cid in self.kept:
            cls = index.classes[cid]
            for pos in cls.members:
                node = free.nodes[pos]
                share = device_share(cls, node)
                if share:
                    spared[node.name] = {**node.free, **{key: max(node.free.get(key, 0.0) - amount, 0.0)
                                                         for key, amount in share.items()}}
        return free.with_free(spared) if spared else free

    def place(self, spec: JobSpec, free: ClusterSnapshot) -> Plan | None:
        """``spec``'s placeable plan on ``free``, off the device share when it is CPU work."""
        slot = placeable(allocator.plan(spec, free))
        if slot is not None and self.takes_share(slot, free):
            slot = placeable(allocator.plan(spec, self.spare(free)))
        return slot

    def fits_on(self, spec: JobSpec, free: ClusterSnapshot) -> Plan | None:
        """Where ``spec`` would start were ``free`` the free resources (less the reservations)."""
        return self.place(spec, self.books.view_of(free))
