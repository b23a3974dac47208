"""Who applies a job's precision, and what `orch validate` says when nobody would.

A loop that calls one of orch's precision helpers (``orchestrator.loop``) applies the
precision itself, where it chooses: orch leaves it alone. A loop that calls none gets bf16
from the runner: the whole torch loop under ``torch.autocast`` on the worker's device, or
Keras' ``mixed_bfloat16`` policy set before the loop builds its model. fp16 needs loss
scaling inside the loop (``grad_scaler``), which no wrapper can add; jax loops pick their
dtypes themselves. Which helpers a loop calls is read from its entry file (load/loopcode.py).
"""

from __future__ import annotations

from enum import Enum


class AppliedBy(str, Enum):
    ORCH = "orch"  # the runner: torch autocast or the Keras policy around the whole loop
    LOOP = "loop"  # the loop, through orch's helpers
    NONE = "none"  # fp32, or a precision nobody applies (the loop trains in fp32)


# The orchestrator.loop helpers through which a loop of each framework applies the precision itself.
HELPERS = {"torch": ("autocast", "grad_scaler", "precision"), "tensorflow": ("keras_policy", "precision"),
           "jax": ("precision",)}
RUNNER_APPLIES = {("torch", "bf16"), ("tensorflow", "bf16")}
SHOWN = {AppliedBy.ORCH: {"torch": "orch's autocast", "tensorflow": "orch's mixed_bfloat16 policy"},
         AppliedBy.LOOP: "the loop, with orch's helpers", AppliedBy.NONE: ""}


def applied_by(framework: str, precision: str, helpers: frozenset[str]) -> AppliedBy:
    """Who applies the resolved ``precision`` (fp32, bf16, fp16) to a loop calling ``helpers``."""
    if precision == "fp32":
        return AppliedBy.NONE
    if helpers & set(HELPERS.get(framework, ())):
        return AppliedBy.LOOP
    return AppliedBy.ORCH if (framework, precision) in RUNNER_APPLIES else AppliedBy.NONE


def shown(precision: str, framework: str, by: AppliedBy | str | None) -> str:
    """``bf16 (orch's autocast)``: the precision in effect and who applies it, as `orch status` says it."""
    by = AppliedBy(by) if by else None
    if by is AppliedBy.NONE and precision != "fp32":
        return f"{precision} asked, fp32 in effect (the loop calls none of orch's precision helpers)"
    how = SHOWN[by] if by else ""
    how = how.get(framework, "") if isinstance(how, dict) else how
    return f"{precision} ({how})" if how else precision


def warning(framework: str, precision: str, helpers: frozenset[str], entry: str) -> str | None:
    """What `orch validate` warns of: a spec's fp16/bf16 that the loop in ``entry`` would not get."""
    if precision not in ("bf16", "fp16"):
        return None  # fp32, or auto: orch's pick for the hardware, not a promise the user asked for
    if framework == "torch" and precision == "fp16" and "grad_scaler" not in helpers:
        outcome = "" if "autocast" in helpers else ", so it would train in fp32"
        return (f"precision: fp16 needs loss scaling inside the loop, which orch cannot add: {entry} never calls "
                f"orchestrator.loop.grad_scaler(device){outcome}; use it with autocast(device) as "
                "jobs/digits/train_torch.py does, or set precision: bf16, which orch applies by itself")
    if applied_by(framework, precision, helpers) is not AppliedBy.NONE:
        return None
    if framework == "tensorflow":
        return (f"precision: fp16: {entry} never calls orchestrator.loop.keras_policy() (before building the model), "
                "so it would train in fp32; orch sets only bf16 (mixed_bfloat16) by itself")
    return (f"precision: {precision}: {framework} loops choose their dtypes themselves and {entry} never reads "
            "orchestrator.loop.precision(), so it would train in fp32")
