"""A plan as Ray Train V2 ``ScalingConfig`` keyword arguments: what the job's driver passes on."""

from __future__ import annotations

from orchestrator.core import hardware
from orchestrator.core.allocator import Plan

_STRATEGIES = {"pack": "PACK", "spread": "SPREAD", "strict_pack": "STRICT_PACK", "strict_spread": "STRICT_SPREAD"}


def scaling_config_kwargs(plan: Plan, *, simulated: bool = False) -> dict:
    """Keyword arguments of Ray Train V2 ``ScalingConfig`` for ``plan``.

    TPU plans on real TPUs set ``use_tpu`` with ``topology`` and ``accelerator_type``
    (Ray Train then reserves the slice itself, and forbids a label selector for
    more than one worker). ``simulated=True`` is for clusters whose TPUs are
    only resources on CPU machines, where ``use_tpu`` would start JAX's TPU
    set-up: the chips are reserved as the host's share of its
    ``accelerator_type:TPU-*`` resource and the label selector pins the
    planned slice (or TPU type).
    """
    fixed = plan.min_workers == plan.max_workers
    kwargs = {
        "num_workers": plan.max_workers if fixed else (plan.min_workers, plan.max_workers),
        "resources_per_worker": dict(plan.per_worker),
        "placement_strategy": _STRATEGIES[plan.placement],
        "label_selector": dict(plan.label_selector) if plan.label_selector else None,
        "use_gpu": hardware.GPU in plan.per_worker,
    }
    tpu = plan.tpu
    if tpu is None:
        return kwargs
    if simulated:
        resources = {k: v for k, v in plan.per_worker.items() if k != hardware.TPU}
        share = plan.per_worker[hardware.TPU] / tpu.chips_per_host
        # Ray keeps four decimals of a fractional resource; round down so shares never overfill a host.
        resources[hardware.ACCELERATOR_RESOURCE_PREFIX + tpu.accelerator_type] = int(share * 10_000) / 10_000
        return {**kwargs, "resources_per_worker": resources}
    slice_wide = tpu.slice_name is not None or plan.max_workers > 1
    return {**kwargs, "use_tpu": True, "accelerator_type": tpu.accelerator_type,
            "topology": tpu.topology if slice_wide else None,
            "label_selector": None if slice_wide else kwargs["label_selector"]}
