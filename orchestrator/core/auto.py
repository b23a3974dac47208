"""``accelerator: auto`` as concrete options (SPEC.md section 3). PURE: no Ray, no I/O.

CPU for a tiny model or a cluster without accelerators; else every accelerator type
present whose devices hold the job's accelerator memory, best list price per peak
TFLOP/s first. One worker takes 1, 2, 4 or 8 devices of a type
(``hardware.WORKER_DEVICE_COUNTS``), the fewest that hold the memory: a model larger
than one device is sharded over them (FSDP/ZeRO), and 3 or 7 devices are shapes no
node offers and no sharding layout splits evenly. A model larger than 8 devices of a
type takes a whole TPU slice of it, or that type is not an option.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core import hardware
from orchestrator.core.hardware import AcceleratorRequest
from orchestrator.core.placement import gib
from orchestrator.core.snapshot import ClusterSnapshot
from orchestrator.core.spec import JobSpec

_CPU = AcceleratorRequest("cpu")


@dataclass(frozen=True)
class Choice:
    """A job's options once ``auto`` is expanded, and what to say about them."""

    options: tuple[AcceleratorRequest, ...]
    why: str = ""  # "" unless the spec says auto
    rejected: tuple[tuple[str, str], ...] = ()  # (type, reason) of the types auto left out
    need: int | None = None  # accelerator memory one worker needs, bytes

    def sharding(self, request: AcceleratorRequest) -> str:
        """The why's clause when ``request`` shards the model over several devices; "" when one holds it."""
        acc = request.slice.accelerator if request.slice else request.type
        one = hardware.device_memory(acc, 1) if acc is not None else None
        if not self.need or one is None or self.need <= one:
            return ""
        over = (f"the {request.slice.chips} chips of a {request.slice.name} slice (SPMD)" if request.slice
                else f"{request.count} x {acc.name} per worker (FSDP/ZeRO)")
        return f"; sharded over {over}: one {acc.name} holds {gib(one)}"


def expand(spec: JobSpec, snapshot: ClusterSnapshot) -> Choice:
    """The spec's options, ``auto`` as concrete ones: best price per peak TFLOP/s first."""
    options = spec.resources.accelerator.options
    if options[0].kind != "auto":
        return Choice(options)
    params = spec.hints.params
    if params is not None and params < hardware.TINY_MODEL_PARAMS:
        return Choice((_CPU,), f"auto: {_params(params)} parameters is below {_params(hardware.TINY_MODEL_PARAMS)}: CPU")
    present = {cls.accelerator for cls in snapshot.index.classes if cls.accelerator}
    if not present:
        return Choice((_CPU,), "auto: the cluster has no accelerators: CPU")
    need = spec.resources.accelerator_memory or (hardware.train_memory_bytes(params) if params else None)
    chosen, rejected = [], []
    for acc in sorted(present, key=lambda a: a.value_rank):
        request, reason = _request(acc, need, snapshot)
        if request:
            chosen.append(request)
        else:
            rejected.append((acc.name, reason))
    if not need:
        memory = "no memory hint"
    elif spec.resources.accelerator_memory:
        memory = f"needs {gib(need)} accelerator memory"
    else:
        memory = f"{_params(params)} parameters need {gib(need)} accelerator memory to train"
    ranked = ", ".join(f"{r} ({(r.slice.accelerator if r.slice else r.type).per_tflops_text})" for r in chosen)
    why = f"auto: {memory}; by list price per peak TFLOP/s-hour: {ranked or 'none fits'}"
    return Choice(tuple(chosen), why, tuple(rejected), need)


def _request(acc: hardware.Accelerator, need: int | None, snapshot: ClusterSnapshot):
    """Devices of ``acc`` that hold ``need`` on one node, else the smallest slice that does; or why not."""
    index = snapshot.index
    largest = max(index.classes[c].total.get(index.classes[c].primary, 0) for c in index.by_type[acc.ray_type])
    if need and acc.memory_gib is None:
        return None, f"needs {gib(need)}; the memory of {acc.name} is unknown (declare it in the cluster file)"
    count = hardware.worker_devices(acc, need) if need else 1
    single_host = not acc.is_tpu or (count or 0) <= acc.chips_per_host or count in acc.single_host_chips
    if count and count <= largest and single_host:
        return AcceleratorRequest("tpu" if acc.is_tpu else "gpu", count, acc), ""
    slices = sorted((s for s in map(_known_slice, index.slices) if s and s.accelerator is acc), key=lambda s: s.chips)
    for tpu_slice in slices:
        if need <= hardware.device_memory(acc, tpu_slice.chips):
            return AcceleratorRequest("slice", slice=tpu_slice), ""
    if count is None:
        most = hardware.WORKER_DEVICE_COUNTS[-1]
        reason = (f"needs {hardware.devices_for_memory(acc, need)} x {acc.name} for {gib(need)}; "
                  f"auto shards a worker over at most {most}")
    else:
        reason = f"needs {count} x {acc.name} for {gib(need)}; the largest {acc.name} node has {largest:g}"
    if slices:
        reason += f", the largest slice {slices[-1].name} holds {gib(hardware.device_memory(acc, slices[-1].chips))}"
    return None, reason


def _known_slice(pod_type: str) -> hardware.TpuSlice | None:
    try:
        return hardware.parse_slice_name(pod_type)
    except hardware.AcceleratorError:
        return None


def _params(count: int) -> str:
    return f"{count / 1e9:g}B" if count >= 1e9 else f"{count / 1e6:g}M"
