"""Reservations within one step: a job that does not fit the free resources holds the share of
the least busy nodes it would run on, so later jobs backfill only around it, or, when their
estimates say they end before it is expected to start (its shadow time), on it meanwhile."""

from __future__ import annotations

import math
from typing import Mapping

from orchestrator.core.allocator import Plan
from orchestrator.core.policy.books import Books
from orchestrator.core.policy.devices import DeviceGuard
from orchestrator.core.policy.quota import busy
from orchestrator.core.policy.reasons import device_kind
from orchestrator.core.policy.state import QueuedJob
from orchestrator.core.snapshot import EPS
from orchestrator.core.spec import JobSpec

# How many waiting jobs of one step hold a reservation (see decide.py's docstring).
RESERVATIONS = 4


class Reservations:
    """The reservations of one step, at most ``RESERVATIONS``."""

    def __init__(self, books: Books, devices: DeviceGuard):
        self.books, self.devices = books, devices
        self.count = 0

    @property
    def left(self) -> bool:
        """Whether the step may hold one more reservation."""
        return self.count < RESERVATIONS

    def place(self, job: QueuedJob, queued: Plan) -> Plan | None:
        """Where ``job`` would run on the least busy nodes of its node classes, were they empty;
        None once the step holds ``RESERVATIONS`` or when emptying them all does not make it fit."""
        if not self.take():
            return None
        return self.fit(job.spec, queued)

    def take(self) -> bool:
        """Count one more reservation of the step; False when it holds ``RESERVATIONS`` already."""
        if not self.left:
            return False
        self.count += 1
        return True

    def fit(self, spec: JobSpec, queued: Plan) -> Plan | None:
        """Where ``spec`` would run on the least busy nodes of ``queued``'s node classes, were they
        empty; None when emptying them all does not make it fit."""
        view = self.books.view
        kind = device_kind(queued.per_worker)
        return self._emptying(spec, sorted(self._members(queued), key=lambda p: busy(view.nodes[p], kind)))

    def soonest(self, spec: JobSpec, queued: Plan) -> tuple[Plan, float | None] | None:
        """Where ``spec`` is expected to start soonest on ``queued``'s node classes, and when
        (None: unknown): nodes are emptied in the order they are expected to hold one worker,
        behind the reservations already on them (a job holding out for a type waits for it there)."""
        view, per_worker = self.books.view, queued.per_worker
        when = {p: self.shadow({view.nodes[p].name: per_worker}, behind_reserved=True) for p in self._members(queued)}
        order = sorted(when, key=lambda p: (math.inf if when[p] is None else when[p], p))
        fit = self._emptying(spec, order)
        return None if fit is None else (fit, self.shadow(fit.demand(), behind_reserved=True))

    def _members(self, queued: Plan) -> list[int]:
        """The nodes of ``queued``'s node classes, by position."""
        index = self.books.view.index
        classes = {index.class_of[index.position[name]] for name in queued.nodes}
        return [p for c in classes for p in index.classes[c].members]

    def _emptying(self, spec: JobSpec, members: list[int]) -> Plan | None:
        """Where ``spec`` fits once the first of ``members`` are empty (as few as do: 1, 2, 4...)."""
        books = self.books
        view = books.view
        count = 1
        while True:
            emptied = {view.nodes[p].name: dict(view.nodes[p].total) for p in members[:count]}
            fit = self.devices.fits_on(spec, books.free.with_free(emptied))
            if fit:
                return fit
            if count >= len(members):
                return None
            count = min(2 * count, len(members))

    def holder(self, on_free: Plan) -> tuple[QueuedJob, list[str]]:
        """The first job holding a reservation on ``on_free``'s nodes, and those reserved nodes."""
        nodes = sorted({n for n in on_free.nodes if n in self.books.holder})
        return self.books.holder[nodes[0]], nodes

    def shadow(self, demand: Mapping[str, Mapping[str, float]], behind_reserved: bool = False) -> float | None:
        """When ``demand`` is expected to be free (EASY backfill's shadow time): the jobs holding
        its nodes end in their expected order until what they release covers what is short
        now; None when one of those that must end first has no estimate. ``behind_reserved``:
        what the step reserved on those nodes is short too, and served first."""
        books = self.books
        short: dict[str, dict[str, float]] = {}
        for name, need in demand.items():
            free = books.free.node(name).free
            if behind_reserved and name in books.reserved:
                held = books.reserved[name]
                free = {key: value - held.get(key, 0.0) for key, value in free.items()}
            lack = {key: amount - free.get(key, 0.0) for key, amount in need.items() if amount > free.get(key, 0.0) + EPS}
            if lack:
                short[name] = lack
        if not short:
            return books.now
        ending = sorted(((end, name, amounts) for name in short for amounts, end in books.ends_on(name)),
                        key=lambda held: math.inf if held[0] is None else held[0])
        for end, name, amounts in ending:
            if end is None:
                return None
            lack = short.get(name)
            if lack is None:
                continue
            for key in list(lack):
                lack[key] -= amounts.get(key, 0.0)
                if lack[key] <= EPS:
                    del lack[key]
            if not lack:
                del short[name]
                if not short:
                    return end
        return None
