"""The accelerator catalog: every fact orch knows about hardware, as data.

Nothing here talks to a cluster. Specs, the allocator and the runners ask this
module what an accelerator string means, how much memory and compute a device
has, what it costs, and which Ray resources and node labels stand for it.

Prices are public on-demand list prices per device-hour (GPU or TPU chip), in
USD, from Google Cloud's GPU and TPU pricing pages (us-central1, 2025), except
A10G which only AWS sells (g5 instances, us-east-1, 2025). Peak TFLOP/s are the
vendors' dense (no sparsity) datasheet figures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from orchestrator.core.suggest import closest

# Ray's resource and label names (ray.util.accelerators, ray._raylet). Kept as
# literals so that parsing a spec never imports Ray.
GPU = "GPU"
TPU = "TPU"
CPU = "CPU"
MEMORY = "memory"
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"
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


@dataclass(frozen=True)
class Accelerator:
    """One kind of accelerator device (a GPU, or one TPU chip)."""

    name: str  # canonical name as users write it: "A100", "TPU-v4"
    family: str  # "gpu" | "tpu"
    aliases: tuple[str, ...]
    memory_gib: float  # per device
    peak_bf16_tflops: float  # dense; fp16 tensor-core figure where bf16 is absent
    peak_fp32_tflops: float
    bf16: bool
    price_per_hour: float  # per device
    ray_type: str  # Ray's accelerator_type value (ray.util.accelerators)
    # TPU only: chips on one host, and slice sizes in the name's unit.
    chips_per_host: int = 0
    slice_unit: int = 1  # v4/v5p names count TensorCores (2 per chip); v5e/v6e chips
    single_host_chips: tuple[int, ...] = ()
    topology_dims: int = 0  # 3 for v4/v5p (2x2x2), 2 for v5e/v6e (4x4)
    pod_prefix: str = ""  # Ray/GKE pod-type label prefix where it differs from the generation

    @property
    def is_tpu(self) -> bool:
        return self.family == "tpu"

    @property
    def ray_resource(self) -> str:
        """The node resource a Ray node of this type carries."""
        return ACCELERATOR_RESOURCE_PREFIX + self.ray_type

    @property
    def price_per_tflops(self) -> float:
        return self.price_per_hour / self.peak_bf16_tflops

    @property
    def generation(self) -> str:
        """TPU generation as slice names spell it: "v4", "v5e"."""
        return self.name.split("-", 1)[1] if self.is_tpu else ""


CATALOG: tuple[Accelerator, ...] = (
    Accelerator("T4", "gpu", ("nvidia-t4", "tesla-t4"), 16, 65, 8.1, False, 0.35, "T4"),
    Accelerator("L4", "gpu", ("nvidia-l4",), 24, 121, 30.3, True, 0.71, "L4"),
    Accelerator("A10G", "gpu", ("nvidia-a10g", "a10"), 24, 70, 31.2, True, 1.006, "A10G"),
    Accelerator("V100", "gpu", ("nvidia-v100", "tesla-v100"), 16, 125, 15.7, False, 2.48, "V100"),
    Accelerator(
        "A100", "gpu", ("nvidia-a100", "a100-40gb", "nvidia-a100-40gb"), 40, 312, 19.5, True, 2.93, "A100"
    ),
    Accelerator(
        "A100-80GB", "gpu", ("nvidia-a100-80gb", "a100-80g"), 80, 312, 19.5, True, 3.93, "A100-80G"
    ),
    Accelerator("H100", "gpu", ("nvidia-h100", "h100-80gb"), 80, 989, 67, True, 11.06, "H100"),
    Accelerator("H200", "gpu", ("nvidia-h200", "h200-141gb"), 141, 989, 67, True, 10.60, "H200"),
    Accelerator(
        "TPU-v4", "tpu", ("v4", "tpuv4"), 32, 275, 137.5, True, 3.22, "TPU-V4",
        chips_per_host=4, slice_unit=2, single_host_chips=(4,), topology_dims=3,
    ),
    Accelerator(
        "TPU-v5e", "tpu", ("v5e", "tpu-v5litepod", "v5litepod"), 16, 197, 98.5, True, 1.20,
        "TPU-V5LITEPOD", chips_per_host=4, slice_unit=1, single_host_chips=(1, 4, 8), topology_dims=2,
        pod_prefix="v5litepod",
    ),
    Accelerator(
        "TPU-v5p", "tpu", ("v5p",), 95, 459, 229.5, True, 4.20, "TPU-V5P",
        chips_per_host=4, slice_unit=2, single_host_chips=(4,), topology_dims=3,
    ),
    Accelerator(
        "TPU-v6e", "tpu", ("v6e", "trillium"), 32, 918, 459, True, 2.70, "TPU-V6E",
        chips_per_host=4, slice_unit=1, single_host_chips=(1, 4, 8), topology_dims=2,
    ),
)

BY_NAME: dict[str, Accelerator] = {}
for _acc in CATALOG:
    for _key in (_acc.name, *_acc.aliases):
        BY_NAME[_key.lower()] = _acc
BY_RAY_TYPE: dict[str, Accelerator] = {a.ray_type: a for a in CATALOG}


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


def parse_accelerator(text: str) -> AcceleratorRequest:
    """Parse ``CPU``, ``GPU:2``, ``a100:1``, ``TPU-v5e:4``, ``TPU-v4-16`` or ``auto``."""
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
    if not count_match and (low == "gpu" or low in BY_NAME):
        count_match = _WITH_COUNT.match(f"{raw}:1")  # a bare type means one device
    if not count_match:
        raise AcceleratorError(
            f"{raw!r} is not an accelerator; write TYPE:COUNT (GPU:1, A100:2, TPU-v5e:4), "
            f"a TPU slice (TPU-v4-16), CPU or auto{_did_you_mean(low)}"
        )
    name, count = count_match.group(1).strip(), int(count_match.group(2))
    if count < 1:
        raise AcceleratorError(f"{raw!r}: the count must be at least 1")
    if name.lower() == "gpu":
        return AcceleratorRequest("gpu", count=count)
    acc = lookup(name)
    if acc.is_tpu:
        if count & (count - 1) or (count > acc.chips_per_host and count not in acc.single_host_chips):
            raise AcceleratorError(
                f"{raw!r}: a {acc.name} host offers 1, 2 or 4 chips (8 on v5e/v6e) and at most {max(acc.chips_per_host, *acc.single_host_chips)} "
                f"chips; for more, ask for a whole slice such as TPU-{acc.generation}-{8 * acc.slice_unit * 2}"
            )
        return AcceleratorRequest("tpu", count=count, type=acc)
    return AcceleratorRequest("gpu", count=count, type=acc)


def lookup(name: str) -> Accelerator:
    """The catalog entry for a type name or alias (case-insensitive)."""
    acc = BY_NAME.get(name.strip().lower())
    if acc is None:
        raise AcceleratorError(f"unknown accelerator type {name!r}{_did_you_mean(name.lower())}")
    return acc


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


def _did_you_mean(word: str) -> str:
    word = word.split(":", 1)[0]
    choices = ["CPU", "GPU", "auto", *catalog_names()]
    by_lower = {c.lower(): c for c in choices}
    by_lower.update({alias: BY_NAME[alias].name for alias in BY_NAME})
    close = closest(word.lower(), by_lower, n=3, cutoff=0.5)
    names = list(dict.fromkeys(by_lower[c] for c in close))
    if not names:
        return f" (known types: {', '.join(choices)})"
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


def device_memory(acc: Accelerator, devices: int) -> float:
    """Bytes of accelerator memory on ``devices`` devices of ``acc``."""
    return acc.memory_gib * GIB * devices


def devices_for_memory(acc: Accelerator, need_bytes: int) -> int:
    """How many devices of ``acc`` hold ``need_bytes`` between them."""
    return max(1, math.ceil(need_bytes / device_memory(acc, 1)))


def worker_devices(acc: Accelerator, need_bytes: int) -> int | None:
    """The fewest of ``WORKER_DEVICE_COUNTS`` devices of ``acc`` that hold ``need_bytes``; None when 8 do not."""
    fewest = devices_for_memory(acc, need_bytes)
    return next((count for count in WORKER_DEVICE_COUNTS if count >= fewest), None)
