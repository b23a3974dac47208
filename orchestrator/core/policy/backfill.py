"""Estimate-aware (EASY) backfill: a later job may use resources reserved for a waiting one when
it is expected to end before each reservation it would use is expected to start (the
reservations' shadow time, `Books.backfill_until`), and its quota allows. Without an estimate
or a time limit a job never backfills (SPEC.md's conservative rule); a job that overruns is not
stopped for it: the next step reserves again for the waiting job.
PURE: no Ray, no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from orchestrator.core.allocator import Plan
from orchestrator.core.policy.admission import QuotaGate
from orchestrator.core.policy.books import Books
from orchestrator.core.policy.devices import DeviceGuard
from orchestrator.core.policy.quota import plan_totals
from orchestrator.core.policy.state import QueuedJob, QueueState
from orchestrator.core.snapshot import EPS


class Backfill:
    """The backfill questions of one step; equal placement keys plan alike until the view changes."""

    def __init__(self, state: QueueState, books: Books, gate: QuotaGate, devices: DeviceGuard):
        self.state, self.books, self.gate, self.devices = state, books, gate, devices
        # placement key -> (the view when it was planned, its plan on the free resources, when it must end by)
        self.slots: dict[tuple, tuple] = {}

    def slot(self, job: QueuedJob, key: tuple, lending: bool) -> tuple[Plan, Mapping[str, float], float] | None:
        """(its plan on reserved resources, what it needs of its quota, when it must end by) when
        ``job`` may backfill now; None when it may not."""
        books = self.books
        slot = self.slots.get(key)
        if slot is None or slot[0] is not books.view:  # equal keys plan alike until a start or a reservation
            placed = self.devices.place(job.spec, books.free)
            slot = self.slots[key] = (books.view, placed, placed and books.backfill_until(placed))
        _, placed, until = slot
        within = placed and job.ends_within(placed)
        if within is None or until is None or self.state.now + within > until + EPS:
            return None
        need = plan_totals(placed)
        if self.gate.over_quota(job, need) or (not lending and self.gate.borrows(job, need)):
            return None
        return (placed if placed.job == job.id else replace(placed, job=job.id)), need, until
