"""The accelerator catalog: every fact orch knows about hardware, as data.

Nothing here talks to a cluster. Specs, the allocator and the runners ask this
module what an accelerator string means, how much memory and compute a device
has, what it costs, and which Ray resources and node labels stand for it.

The table itself, with where its figures come from, is ``core/catalog.py``; types outside it
(custom types) come in as data: a cluster file declares them and a live node reports them,
and the snapshot carries them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from orchestrator.core.catalog import (
    ACCELERATOR_RESOURCE_PREFIX,
    CATALOG,
    DECLARED,
    DEVICE_RESOURCES,
    FAMILIES,
    GPU,
    LEARNED,
    NAMED,
    TPU,
    Accelerator,
)
from orchestrator.core.suggest import closest

__all__ = ["ACCELERATOR_RESOURCE_PREFIX", "CATALOG", "DEVICE_RESOURCES", "FAMILIES", "GPU", "TPU", "Accelerator"]

# Ray's resource and label names (ray.util.accelerators, ray._raylet). Kept as
# literals so that parsing a spec never imports Ray.
CPU = "CPU"
MEMORY = "memory"
LABEL_ACCELERATOR_TYPE = "ray.io/accelerator-type"
LABEL_TPU_SLICE_NAME = "ray.io/tpu-slice-name"
LABEL_TPU_WORKER_ID = "ray.io/tpu-worker-id"
LABEL_TPU_TOPOLOGY = "ray.io/tpu-topology"
LABEL_TPU_POD_TYPE = "ray.io/tpu-pod-type"

# Price of one vCPU-hour and one GiB-hour of memory (GCP n2 on-demand, 2025),
# used to cost CPU-only plans.
CPU_PRICE_PER_HOUR = 0.031611
MEMORY_GIB_PRICE_PER_HOUR = 0.004237

GIB = 1024**3
# Training with Adam in mixed precision holds weights, gradients and two
# moments, plus an fp32 master copy: about 16 bytes a parameter.
TRAIN_BYTES_PER_PARAM = 16
# Below this many parameters a model trains well on CPU (`accelerator: auto`).
TINY_MODEL_PARAMS = 10_000_000
# Devices one worker of `accelerator: auto` takes: nodes come with 1, 2, 4 or 8, and
# FSDP/ZeRO shard a model evenly over a power of two.
WORKER_DEVICE_COUNTS = (1, 2, 4, 8)


BY_NAME: dict[str, Accelerator] = {}
for _acc in CATALOG:
    for _key in (_acc.name, _acc.ray_type, *_acc.aliases):
        BY_NAME[_key.lower()] = _acc
BY_RAY_TYPE: dict[str, Accelerator] = {a.ray_type: a for a in CATALOG}
# A custom type's name: what may follow `accelerator_type:` and precede `:N` in a spec.
CUSTOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DECLARE_HINT = ("A type outside orch's catalog is declared in the cluster file's `accelerators:` list "
                "(name, family, memory, bf16_tflops, fp32_tflops, price) or reported by a live node's "
                "accelerator_type:NAME resource; `orch validate --cluster FILE` accepts a file's types")


def named(name: str) -> Accelerator:
    """A type only a spec names so far: what it is, the cluster that has it says (figures unknown)."""
    return Accelerator(name, "gpu", name, source=NAMED)


def learned(ray_type: str, resource: str) -> Accelerator:
    """A type a node reports (``accelerator_type:X``) that nothing describes: figures unknown."""
    family = next((f for f, r in FAMILIES.items() if r == resource), "gpu")
    return Accelerator(ray_type, family, ray_type, source=LEARNED)


def declared(name: str, family: str, ray_type: str | None = None, memory_gib: float | None = None,
             bf16_tflops: float | None = None, fp32_tflops: float | None = None,
             price: float | None = None) -> Accelerator:
    """A custom type a cluster file declares; bf16 counts as supported when its peak is given."""
    return Accelerator(name, family, ray_type or name, memory_gib, bf16_tflops, fp32_tflops, price,
                       bf16=bf16_tflops is not None, source=DECLARED)


def by_name(types: Iterable[Accelerator]) -> dict[str, Accelerator]:
    """Lower-case name and Ray type -> type, to look custom types up as users spell them."""
    return {key.lower(): acc for acc in types for key in (acc.name, acc.ray_type)}


@dataclass(frozen=True)
class TpuSlice:
    """A whole multi-host (or single-host) TPU slice, e.g. ``TPU-v4-16``."""

    accelerator: Accelerator
    size: int  # the number in the name: v4-16 -> 16

    @property
    def chips(self) -> int:
        return self.size // self.accelerator.slice_unit

    @property
    def hosts(self) -> int:
        if self.chips in self.accelerator.single_host_chips:
            return 1
        return self.chips // self.accelerator.chips_per_host

    @property
    def chips_per_host(self) -> int:
        return self.chips // self.hosts

    @property
    def pod_type(self) -> str:
        """Ray's ``ray.io/tpu-pod-type`` label value: ``v4-16``, ``v5litepod-16``."""
        return f"{self.accelerator.pod_prefix or self.accelerator.generation}-{self.size}"

    @property
    def name(self) -> str:
        """The name users write: ``TPU-v4-16``, ``TPU-v5e-16``."""
        return f"TPU-{self.accelerator.generation}-{self.size}"

    @property
    def topology(self) -> str:
        return tpu_topology(self.chips, self.accelerator.topology_dims)

    @property
    def head_resource(self) -> str:
        """Ray puts ``TPU-<pod type>-head`` on worker 0 of every slice."""
        return f"TPU-{self.pod_type}-head"


def tpu_topology(chips: int, dims: int) -> str:
    """Chip grid of a slice as Ray and GKE label it: v4-16 (8 chips) is 2x2x2, v5e-16 is 4x4."""
    if dims == 2:
        side = 2 ** (int(math.log2(chips)) // 2)
        return f"{side}x{chips // side}"
    if chips <= 4:
        return "2x2x1"
    shape = [2, 2, chips // 4]
    # Keep the cube balanced: no side more than twice another (2x4x4, not 2x2x8).
    while max(shape) > 2 * min(shape):
        shape[shape.index(max(shape))] //= 2
        shape[shape.index(min(shape))] *= 2
    return "x".join(str(d) for d in sorted(shape))


@dataclass(frozen=True)
class AcceleratorRequest:
    """One parsed option of ``resources.accelerator``.

    kind: "cpu" (no accelerator), "gpu" (``type`` None means any GPU), "tpu"
    (chips on one host), "slice" (a whole TPU slice), or "auto".
    """

    kind: str
    count: int = 0
    type: Accelerator | None = None
    slice: TpuSlice | None = None

    def __str__(self) -> str:
        if self.kind in ("cpu", "auto"):
            return self.kind.upper() if self.kind == "cpu" else "auto"
        if self.kind == "slice":
            return self.slice.name
        return f"{self.type.name if self.type else 'GPU'}:{self.count}"


class AcceleratorError(ValueError):
    """An accelerator string that is not in the catalog or not well formed."""


_SLICE = re.compile(r"^(?:tpu-)?(v\d+[a-z]*|v5litepod)-(\d+)$", re.IGNORECASE)
_WITH_COUNT = re.compile(r"^(.+?):(\d+)$")


def parse_accelerator(text: str, custom: Mapping[str, Accelerator] | None = None) -> AcceleratorRequest:
    """Parse ``CPU``, ``GPU:2``, ``a100:1``, ``TPU-v5e:4``, ``TPU-v4-16``, ``auto`` or ``NAME:N``.

    ``custom`` (``by_name`` of a cluster's custom types) makes the parse strict: a type neither
    in the catalog nor there is an error. Without it, ``NAME:N`` of a type outside the catalog
    parses as a type only the spec names (``named``): the cluster it runs on says whether it
    exists, where the snapshot is known (the allocator, or ``orch validate --cluster``).
    """
    raw = str(text).strip()
    low = raw.lower()
    if low == "cpu":
        return AcceleratorRequest("cpu")
    if low == "auto":
        return AcceleratorRequest("auto")
    slice_match = _SLICE.match(low)
    if slice_match:
        return AcceleratorRequest("slice", slice=_parse_slice(raw, *slice_match.groups()))
    count_match = _WITH_COUNT.match(raw)
    if not count_match and (low == "gpu" or low in BY_NAME or low in (custom or {})):
        count_match = _WITH_COUNT.match(f"{raw}:1")  # a bare type means one device
    if not count_match:
        raise AcceleratorError(
            f"{raw!r} is not an accelerator; write TYPE:COUNT (GPU:1, A100:2, TPU-v5e:4), "
            f"a TPU slice (TPU-v4-16), CPU or auto{_did_you_mean(low, custom)}"
        )
    name, count = count_match.group(1).strip(), int(count_match.group(2))
    if count < 1:
        raise AcceleratorError(f"{raw!r}: the count must be at least 1")
    if name.lower() == "gpu":
        return AcceleratorRequest("gpu", count=count)
    acc = lookup(name, custom)
    if acc.is_tpu:
        if count & (count - 1) or (count > acc.chips_per_host and count not in acc.single_host_chips):
            raise AcceleratorError(
                f"{raw!r}: a {acc.name} host offers 1, 2 or 4 chips (8 on v5e/v6e) and at most {max(acc.chips_per_host, *acc.single_host_chips)} "
                f"chips; for more, ask for a whole slice such as TPU-{acc.generation}-{8 * acc.slice_unit * 2}"
            )
        return AcceleratorRequest("tpu", count=count, type=acc)
    return AcceleratorRequest("gpu", count=count, type=acc)


def lookup(name: str, custom: Mapping[str, Accelerator] | None = None) -> Accelerator:
    """The type a name or alias means (case-insensitive): the catalog's, else ``custom``'s; else,
    when ``custom`` is None, a type only named (TPU generations excepted: they are the catalog's)."""
    key = name.strip().lower()
    acc = BY_NAME.get(key) or (custom or {}).get(key)
    if acc is not None:
        return acc
    if custom is None and CUSTOM_NAME.match(name.strip()) and not key.startswith("tpu"):
        return named(name.strip())
    raise AcceleratorError(unknown_type(name, custom))


def unknown_type(name: str, custom: Mapping[str, Accelerator] | None = None) -> str:
    """Why ``name`` is no type here: the did-you-mean, and how to declare a custom type."""
    text = f"unknown accelerator type {name!r}{_did_you_mean(name.lower(), custom)}"
    if name.strip().lower().startswith("tpu"):
        return text
    return f"{text}{'' if text.endswith('?') else '.'} {DECLARE_HINT}"


def _parse_slice(raw: str, generation: str, size_text: str) -> TpuSlice:
    acc = BY_NAME.get(generation.lower()) or BY_NAME.get(f"tpu-{generation.lower()}")
    if acc is None or not acc.is_tpu:
        raise AcceleratorError(f"unknown TPU generation in {raw!r}{_did_you_mean(raw.lower())}")
    size = int(size_text)
    chips = size // acc.slice_unit
    power_of_two = chips >= 1 and chips & (chips - 1) == 0
    if size % acc.slice_unit or not power_of_two:
        unit = "TensorCores (2 a chip)" if acc.slice_unit == 2 else "chips"
        raise AcceleratorError(
            f"{raw!r} is not a {acc.name} slice: the number counts {unit} and must be a power "
            f"of two, such as TPU-{acc.generation}-{8 * acc.slice_unit}"
        )
    tpu_slice = TpuSlice(acc, size)
    if tpu_slice.hosts > 1 and chips % acc.chips_per_host:
        raise AcceleratorError(f"{raw!r} does not divide into hosts of {acc.chips_per_host} chips")
    return tpu_slice


def parse_slice_name(pod_type: str) -> TpuSlice:
    """Parse a cluster file's ``tpu_slice: v4-16`` (or ``TPU-v4-16``)."""
    match = _SLICE.match(pod_type.strip().lower())
    if not match:
        raise AcceleratorError(f"{pod_type!r} is not a TPU slice name such as v4-16 or v5e-16")
    return _parse_slice(pod_type, *match.groups())


def catalog_names() -> list[str]:
    return [a.name for a in CATALOG]


def _did_you_mean(word: str, custom: Mapping[str, Accelerator] | None = None) -> str:
    word = word.split(":", 1)[0]
    by_lower = {c.lower(): c for c in ("CPU", "GPU", "auto")}
    by_lower.update({alias: acc.name for alias, acc in (*BY_NAME.items(), *(custom or {}).items())})
    close = closest(word.lower(), by_lower, n=3, cutoff=0.5)
    names = list(dict.fromkeys(by_lower[c] for c in close))
    if not names:
        extra = f", this cluster's {', '.join(sorted({a.name for a in custom.values()}))}" if custom else ""
        return f" (known: CPU, GPU, auto, the {len(CATALOG)} catalog types of docs/spec.md{extra})"
    return f"; did you mean {' or '.join(names)}?"


def train_memory_bytes(params: int) -> int:
    """Accelerator memory needed to train a model of ``params`` parameters."""
    return params * TRAIN_BYTES_PER_PARAM


def resolve_precision(precision: str, request: AcceleratorRequest) -> str:
    """``auto`` becomes bf16 on accelerators that have it, else fp32.

    CPU plans resolve to fp32: bf16 autocast on CPUs without AMX units is
    slower than fp32, and the digits-sized models that run there gain nothing.
    """
    if precision != "auto":
        return precision
    device = request.slice.accelerator if request.slice else request.type
    return "bf16" if device is not None and device.bf16 else "fp32"


def cost_per_hour(request: AcceleratorRequest, per_worker: Mapping[str, float], workers: int) -> float | None:
    """List price per hour of a plan: devices for accelerator plans, vCPUs and memory for CPU
    plans; None for devices of unknown price."""
    acc = request.slice.accelerator if request.slice else request.type
    if acc is not None:
        if acc.price_per_hour is None:
            return None
        per = acc.price_per_hour * per_worker.get(acc.resource, 0)
    elif request.kind == "cpu":
        per = per_worker[CPU] * CPU_PRICE_PER_HOUR + per_worker[MEMORY] / GIB * MEMORY_GIB_PRICE_PER_HOUR
    else:
        return None  # GPU:N is priced once its type is chosen
    return round(per * workers, 4)


def price_text(cost: float | None) -> str:
    return "an unknown price" if cost is None else f"${cost:g}/h"


def device_memory(acc: Accelerator, devices: int) -> float | None:
    """Bytes of accelerator memory on ``devices`` devices of ``acc``; None when its memory is unknown."""
    return None if acc.memory_gib is None else acc.memory_gib * GIB * devices


def devices_for_memory(acc: Accelerator, need_bytes: int) -> int | None:
    """How many devices of ``acc`` hold ``need_bytes`` between them; None when its memory is unknown."""
    if acc.memory_gib is None:
        return None
    return max(1, math.ceil(need_bytes / device_memory(acc, 1)))


def worker_devices(acc: Accelerator, need_bytes: int) -> int | None:
    """The fewest of ``WORKER_DEVICE_COUNTS`` devices of ``acc`` that hold ``need_bytes``; None
    when 8 do not or its memory is unknown."""
    fewest = devices_for_memory(acc, need_bytes)
    return next((count for count in WORKER_DEVICE_COUNTS if fewest and count >= fewest), None)
