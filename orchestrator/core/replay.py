"""Simulated time for the queue policy: a heap of events (arrivals, ends) drives a clock, and at
each instant ``decide`` (the code the control plane runs) is asked what to do, and its decision
is applied to a ``QueueState``. ``orch simulate`` (core/simulate.py) replays a trace with it and
the ETAs (core/forecast.py) run the live queue forward with it: one scheduler, two uses.
PURE: no Ray, no I/O, no clock.
"""

from __future__ import annotations

import heapq
from typing import Callable

from orchestrator.core.allocator import Plan
from orchestrator.core.policy.decide import decide
from orchestrator.core.policy.state import QueueState

# Rounds of decide at one instant: each round that preempts frees resources for the next.
MAX_ROUNDS = 1000
END, ARRIVAL = 0, 1  # event kinds; at one instant ends come first, so what they free is free for arrivals


class Replay:
    """The event loop. A subclass says what an arrival, a start, an end and a preemption do to
    its jobs; events carry the attempt they belong to, so a preempted attempt's end is stale."""

    def __init__(self, state: QueueState, policy: str):
        self.state, self.policy = state, policy
        self.events: list[tuple[float, int, int, str, int]] = []  # (time, kind, seq, job, attempt)

    def push(self, time: float, kind: int, seq: int, name: str, attempt: int = 0) -> None:
        heapq.heappush(self.events, (time, kind, seq, name, attempt))

    def run(self, done: Callable[[float], bool] | None = None, max_instants: int | None = None) -> None:
        """Apply events and decisions until none are left, ``done(now)`` says so after an instant,
        or ``max_instants`` instants have passed."""
        instants = 0
        while self.events and (max_instants is None or instants < max_instants):
            instants += 1
            now = self.events[0][0]
            self.advance(now)
            while self.events and self.events[0][0] <= now:
                _, kind, _, name, attempt = heapq.heappop(self.events)
                if kind == ARRIVAL:
                    self.arrive(name, now)
                elif attempt == self.attempt(name):  # else a preempted attempt's stale end
                    self.end(name, now)
            self.state.now = now
            self.schedule(now)
            self.after(now)
            if done is not None and done(now):
                return

    def schedule(self, now: float) -> None:
        for _ in range(MAX_ROUNDS):
            decision = decide(self.state, self.policy, explain=False)
            for name, plan in decision.admit:
                self.start(name, plan, now)
            for name, _ in decision.preempt:
                self.preempt(name, now)
            if not decision.preempt:
                return
        raise RuntimeError(f"the policy kept preempting at t={now:g}s for {MAX_ROUNDS} rounds")

    # ---- what a subclass says ----------------------------------------------------------------

    def attempt(self, name: str) -> int:
        raise NotImplementedError

    def arrive(self, name: str, now: float) -> None:
        raise NotImplementedError

    def start(self, name: str, plan: Plan, now: float) -> None:
        raise NotImplementedError

    def end(self, name: str, now: float) -> None:
        raise NotImplementedError

    def preempt(self, name: str, now: float) -> None:
        raise NotImplementedError

    def advance(self, now: float) -> None:
        """Time passes up to ``now`` (before its events)."""

    def after(self, now: float) -> None:
        """The decisions of instant ``now`` are applied."""
