"""Finding nodes for a gang of identical workers: the search under the allocator.

Pure functions over a ``ClusterSnapshot``. A ``Fit`` answers "which nodes hold
these workers" on the free resources (placeable now) or on the totals (queued),
following the placement strategy, and explains why when nothing holds them.
"""

from __future__ import annotations

import bisect
from typing import Iterator, Mapping

from orchestrator.core import hardware
from orchestrator.core.hardware import GIB
from orchestrator.core.snapshot import EPS, ClusterSnapshot

UNLIMITED = 1 << 30


class Fit:
    """Finds nodes for ``min_workers..max_workers`` workers of ``per_worker`` each."""

    def __init__(self, per_worker: Mapping[str, float], min_workers: int, max_workers: int, strategy: str):
        self.per_worker = per_worker
        self.need = tuple((k, float(v)) for k, v in per_worker.items() if v > 0)
        self.min_workers, self.max_workers, self.strategy = min_workers, max_workers, strategy

    def place(self, snapshot: ClusterSnapshot, classes: tuple[int, ...], use_free: bool) -> list[int]:
        """Node positions, one per worker (at least ``min_workers``), or [] when they do not fit."""
        if use_free and self._free_bound(snapshot, classes) < self.min_workers:
            return []  # the free devices (or CPUs) of all candidate nodes together are too few
        if self.strategy in ("pack", "strict_pack"):
            # Best fit: the smallest node that holds every worker keeps big nodes free.
            hit = next(self._candidates(snapshot, classes, use_free, self.max_workers, largest_first=False), None)
            if hit:
                return [hit[0]] * self.max_workers
        found: list[tuple[int, int]] = []
        remaining = self.max_workers
        for pos, room in self._candidates(snapshot, classes, use_free, 1, largest_first=True):
            found.append((pos, room))
            remaining -= 1 if self.strategy in ("spread", "strict_spread") else room
            if remaining <= 0:
                break
        positions = self._deal(found)
        # Node order, so plans read (and compare) the same however the search went.
        return sorted(positions) if len(positions) >= self.min_workers else []

    def holds_all(self, snapshot: ClusterSnapshot, positions: tuple[int, ...], use_free: bool) -> bool:
        """One worker fits on every one of ``positions`` (a TPU slice's hosts)."""
        nodes = snapshot.nodes
        return all(capacity(nodes[p].free if use_free else nodes[p].total, self.need) >= 1 for p in positions)

    def _free_bound(self, snapshot: ClusterSnapshot, classes: tuple[int, ...]) -> float:
        """An upper bound of the workers the free resources hold, from per-class sums."""
        bound = 0.0
        for cid in classes:
            amount = self.per_worker.get(snapshot.index.classes[cid].primary, 0)
            if not amount:
                return UNLIMITED
            bound += snapshot.free_sum(cid) / amount
            if bound >= self.min_workers:
                break
        return bound

    def _deal(self, found: list[tuple[int, int]]) -> list[int]:
        """Workers onto the nodes found: filled in turn (pack) or one per node per round (spread)."""
        if self.strategy == "strict_pack":
            pos, room = max(found, key=lambda f: f[1], default=(0, 0))
            return [pos] * min(room, self.max_workers)
        if self.strategy == "pack":
            return [pos for pos, room in found for _ in range(min(room, self.max_workers))][: self.max_workers]
        rounds = 1 if self.strategy == "strict_spread" else min(max((r for _, r in found), default=0), self.max_workers)
        positions = [pos for turn in range(rounds) for pos, room in found if room > turn]
        return positions[: self.max_workers]

    def _candidates(self, snapshot: ClusterSnapshot, classes: tuple[int, ...], use_free: bool,
                    min_room: int, largest_first: bool) -> Iterator[tuple[int, int]]:
        """(position, workers it holds) of nodes holding at least ``min_room``, class by class.

        Within a class the free ordering is searched by the scarce resource, so a
        busy cluster of a thousand nodes is not scanned node by node.
        """
        index, nodes, need = snapshot.index, snapshot.nodes, self.need
        for cid in classes:
            cls = index.classes[cid]
            if not use_free:
                room = capacity(cls.total, need)
                if room >= min_room:
                    yield from ((pos, room) for pos in cls.members)
                continue
            order = snapshot.free_order(cid)
            threshold = self.per_worker.get(cls.primary, 0) * min_room - EPS
            if largest_first:
                steps = range(len(order) - 1, -1, -1)
            else:
                steps = range(bisect.bisect_left(order, (threshold,)), len(order))
            for i in steps:
                value, pos = order[i]
                if value < threshold:
                    break
                room = capacity(nodes[pos].free, need)
                if room >= min_room:
                    yield pos, room

    def diagnose(self, snapshot: ClusterSnapshot, classes: tuple[int, ...], what: str) -> str:
        """Why the workers do not fit even an empty cluster."""
        node_word = f"{what} node" if what else "node"
        caps = [(capacity(snapshot.index.classes[c].total, self.need), snapshot.index.classes[c]) for c in classes]
        best = max(room for room, _ in caps)
        if best == 0:
            for key, amount in self.need:
                largest = max(cls.total.get(key, 0) for _, cls in caps)
                if amount > largest + EPS:
                    return (f"needs {quantity(key, amount, what)} per worker, largest {node_word} has "
                            f"{quantity(key, largest, what, short=True)}")
            return f"no {node_word} has {', '.join(quantity(k, a, what) for k, a in self.need)} at once"
        if self.strategy == "strict_pack":
            return f"strict_pack puts all {self.min_workers} workers on one node; one {node_word} holds at most {best}"
        nodes = sum(len(cls.members) for room, cls in caps if room)
        if self.strategy == "strict_spread":
            return f"needs {self.min_workers} nodes for strict_spread, cluster has {nodes} {node_word}s with room"
        holds = sum(room * len(cls.members) for room, cls in caps)
        return f"needs {self.min_workers} workers at once, the cluster's {node_word}s hold at most {holds}"


def capacity(have: Mapping[str, float], need: tuple[tuple[str, float], ...]) -> int:
    """How many workers of ``need`` fit in ``have``."""
    best = UNLIMITED
    for key, amount in need:
        room = int((have.get(key, 0.0) + EPS) / amount)
        if room < best:
            if room <= 0:
                return 0
            best = room
    return best


def gib(size: float) -> str:
    value = size / GIB
    return f"{value:.3g} GiB" if value < 1000 else f"{value:,.0f} GiB"  # 1,024 GiB, not 1.02e+03


def quantity(key: str, amount: float, what: str = "", short: bool = False) -> str:
    """``4 x A100``, ``8 CPU``, ``64 GiB memory``; ``short`` drops the unit word."""
    if key == hardware.MEMORY:
        return gib(amount) if short else f"{gib(amount)} memory"
    if key in (hardware.GPU, hardware.TPU) and what:
        return f"{amount:g}" if short else f"{amount:g} x {what}"
    return f"{amount:g}" if short else f"{amount:g} {key}"
