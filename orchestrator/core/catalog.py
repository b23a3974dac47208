"""The accelerator catalog: every device type Ray names, with what is public about it. PURE data.

``CATALOG`` has one entry per ``ray.util.accelerators`` constant of Ray 2.60 (the
``accelerator_type`` value a Ray node reports), except TPU v7x (its slice naming is
not settled in Ray's TPU support; see ``NOT_CATALOGUED``). Figures are per device as
Ray counts devices: one GPU (an MI250X is two GPUs to ROCm, and so to Ray), one TPU
chip, one NeuronCore, one Gaudi (HPU).

Sources (2025), one figure per cell, ``None`` where no public figure fits:
- Memory: the vendors' datasheets, in their GB; peak TFLOP/s: dense (no sparsity)
  bf16 tensor/matrix throughput (fp16 where the device has no bf16, marked
  ``bf16=False``), and fp32 vector throughput; NVIDIA, AMD Instinct, Intel Data
  Center GPU Max, Intel Gaudi 3, FuriosaAI RNGD and Google Cloud TPU datasheets.
- Prices: public on-demand list prices per device-hour in USD, from Google Cloud's
  GPU and TPU pricing pages (us-central1) where Google sells the device; A10G and
  L40S from AWS (g5.xlarge, g6e.xlarge: the one-GPU instance, us-east-1), Gaudi 1
  from AWS (dl1.24xlarge / 8). Devices sold only in whole systems, by contract or
  not in public clouds have ``None``.

Every consumer handles ``None``: the allocator ranks a type with an unknown price
or memory after the known ones, the runtime estimate does not scale across a type
whose peak is unknown, and plans cost such a device at an unknown price.
"""

from __future__ import annotations

from dataclasses import dataclass

# Ray's resource names for devices (ray._private.accelerators: each manager's get_resource_name).
GPU = "GPU"
TPU = "TPU"
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"
NEURON_CORES = "neuron_cores"
HPU = "HPU"
NPU = "NPU"
# Which Ray resource counts the devices of each family.
FAMILIES: dict[str, str] = {
    "gpu": GPU,  # NVIDIA, AMD, Intel GPU Max, Apple, MetaX
    "tpu": TPU,
    "neuron": NEURON_CORES,  # AWS Inferentia and Trainium: Ray counts NeuronCores
    "hpu": HPU,  # Intel Gaudi
    "npu": NPU,  # Huawei Ascend
    "furiosa": "FURIOSA",
    "mblt": "MBLT",  # Mobilint
}
DEVICE_RESOURCES: tuple[str, ...] = tuple(dict.fromkeys(FAMILIES.values()))

# Where a type's facts come from: orch's table, a cluster file's `accelerators:`, a live node
# whose `accelerator_type:X` nothing else describes, or only a job spec that names it.
CATALOGUED, DECLARED, LEARNED, NAMED = "catalog", "cluster file", "node", "spec"

# Ray names these, but orch does not plan them (why, for users who look).
NOT_CATALOGUED = {"TPU-V7X": "TPU v7x slices are not modelled yet (chips per host and slice names)"}


@dataclass(frozen=True)
class Accelerator:
    """One kind of accelerator device (a GPU, a TPU chip, a NeuronCore, a Gaudi)."""

    name: str  # canonical name as users write it: "A100", "TPU-v4", "MI300X"
    family: str  # a key of FAMILIES
    ray_type: str  # Ray's accelerator_type value (ray.util.accelerators)
    memory_gib: float | None = None  # per device
    peak_bf16_tflops: float | None = None  # dense; fp16 where bf16 is absent
    peak_fp32_tflops: float | None = None
    price_per_hour: float | None = None  # per device, USD
    bf16: bool = False
    aliases: tuple[str, ...] = ()
    source: str = CATALOGUED
    # TPU only: chips on one host, and slice sizes in the name's unit.
    chips_per_host: int = 0
    slice_unit: int = 1  # v2/v3/v4/v5p names count TensorCores (2 per chip); v5e/v6e chips
    single_host_chips: tuple[int, ...] = ()
    topology_dims: int = 0  # 3 for v4/v5p (2x2x2), 2 for v2/v3/v5e/v6e (4x4)
    pod_prefix: str = ""  # Ray/GKE pod-type label prefix where it differs from the generation

    @property
    def is_tpu(self) -> bool:
        return self.family == "tpu"

    @property
    def resource(self) -> str:
        """The Ray resource that counts these devices on a node: GPU, TPU, neuron_cores, HPU..."""
        return FAMILIES[self.family]

    @property
    def ray_resource(self) -> str:
        """The marker resource a Ray node of this type carries: ``accelerator_type:A100``."""
        return ACCELERATOR_RESOURCE_PREFIX + self.ray_type

    @property
    def custom(self) -> bool:
        """Not in orch's catalog: declared by a cluster, learned from a node, or only named."""
        return self.source != CATALOGUED

    @property
    def price_per_tflops(self) -> float | None:
        if self.price_per_hour is None or not self.peak_bf16_tflops:
            return None
        return self.price_per_hour / self.peak_bf16_tflops

    @property
    def value_rank(self) -> tuple:
        """``auto``'s order: list price per peak TFLOP/s, types of unknown price or peak last."""
        per_tflops = self.price_per_tflops
        return (per_tflops is None, per_tflops or 0.0, self.name)

    @property
    def per_tflops_text(self) -> str:
        per_tflops = self.price_per_tflops
        return "price per TFLOP/s unknown" if per_tflops is None else f"${per_tflops:.4f}"

    @property
    def generation(self) -> str:
        """TPU generation as slice names spell it: "v4", "v5e"."""
        return self.name.split("-", 1)[1] if self.is_tpu else ""

    def to_json(self) -> dict:
        """What ``orch cluster --json`` shows of a type."""
        return {"name": self.name, "family": self.family, "ray_type": self.ray_type, "resource": self.resource,
                "memory_gib": self.memory_gib, "peak_bf16_tflops": self.peak_bf16_tflops,
                "peak_fp32_tflops": self.peak_fp32_tflops, "price_per_hour": self.price_per_hour,
                "source": self.source}


def _dev(family: str, name: str, ray_type: str, memory, bf16_tflops, fp32_tflops, price, *aliases: str,
         bf16: bool = True) -> Accelerator:
    return Accelerator(name, family, ray_type, memory, bf16_tflops, fp32_tflops, price, bf16, aliases)


def _tpu(name: str, ray_type: str, memory, bf16_tflops, fp32_tflops, price, *aliases: str, **shape) -> Accelerator:
    return Accelerator(name, "tpu", ray_type, memory, bf16_tflops, fp32_tflops, price, True, aliases, **shape)


_G = "gpu"
# name, Ray's type, memory GiB, peak bf16 and fp32 TFLOP/s, $/device-hour, aliases
CATALOG: tuple[Accelerator, ...] = (
    # NVIDIA
    _dev(_G, "K80", "K80", 12, None, 4.4, None, "nvidia-k80", "tesla-k80", bf16=False),  # retired by clouds
    _dev(_G, "P4", "P4", 8, None, 5.5, 0.60, "nvidia-p4", "tesla-p4", bf16=False),
    _dev(_G, "P100", "P100", 16, 18.7, 9.3, 1.46, "nvidia-p100", "tesla-p100", bf16=False),
    _dev(_G, "T4", "T4", 16, 65, 8.1, 0.35, "nvidia-t4", "tesla-t4", bf16=False),
    _dev(_G, "L4", "L4", 24, 121, 30.3, 0.71, "nvidia-l4"),
    _dev(_G, "A10G", "A10G", 24, 70, 31.2, 1.006, "nvidia-a10g", "a10"),
    _dev(_G, "L40S", "L40S", 48, 362, 91.6, 1.861, "nvidia-l40s"),
    _dev(_G, "V100", "V100", 16, 125, 15.7, 2.48, "nvidia-v100", "tesla-v100", bf16=False),
    _dev(_G, "A100", "A100", 40, 312, 19.5, 2.93, "nvidia-a100", "a100-40gb", "nvidia-a100-40gb", "a100-40g"),
    _dev(_G, "A100-80GB", "A100-80G", 80, 312, 19.5, 3.93, "nvidia-a100-80gb", "a100-80g"),
    _dev(_G, "H20", "H20", 96, 148, 44, None, "nvidia-h20"),
    _dev(_G, "H100", "H100", 80, 989, 67, 11.06, "nvidia-h100", "h100-80gb"),
    _dev(_G, "H200", "H200", 141, 989, 67, 10.60, "nvidia-h200", "h200-141gb"),
    _dev(_G, "B200", "B200", 180, 2250, 75, None, "nvidia-b200"),
    _dev(_G, "B300", "B300", 288, 2250, 75, None, "nvidia-b300"),
    _dev(_G, "GB200", "GB200", 186, 2500, 80, None, "nvidia-gb200"),
    _dev(_G, "GB300", "GB300", 288, 2500, None, None, "nvidia-gb300"),
    _dev(_G, "RTX-PRO-6000", "RTX-PRO-6000", 96, None, 126, None, "nvidia-rtx-pro-6000"),
    # AMD Instinct (an MI250/MI250X is two GPUs to ROCm and to Ray: figures per GCD) and Radeon
    _dev(_G, "MI100", "AMD-Instinct-MI100", 32, 92.3, 23.1, None, "amd-mi100"),
    _dev(_G, "MI210", "AMD-Instinct-MI210", 64, 181, 22.6, None, "amd-mi210"),
    _dev(_G, "MI250", "AMD-Instinct-MI250X-MI250", 64, 181, 22.6, None, "amd-mi250"),
    _dev(_G, "MI250X", "AMD-Instinct-MI250X", 64, 191.5, 23.9, None, "amd-mi250x"),
    _dev(_G, "MI300A", "AMD-Instinct-MI300A", 128, 980.6, 122.6, None, "amd-mi300a"),
    _dev(_G, "MI300X", "AMD-Instinct-MI300X-OAM", 192, 1307.4, 163.4, None, "amd-mi300x"),
    _dev(_G, "MI300X-HF", "AMD-Instinct-MI300X-HF", None, None, None, None, "amd-mi300x-hf"),
    _dev(_G, "MI308X", "AMD-Instinct-MI308X", None, None, None, None, "amd-mi308x"),
    _dev(_G, "MI325X", "AMD-Instinct-MI325X-OAM", 256, 1307.4, 163.4, None, "amd-mi325x"),
    _dev(_G, "MI350X", "AMD-Instinct-MI350X-OAM", 288, 2300, 144.2, None, "amd-mi350x"),
    _dev(_G, "MI355X", "AMD-Instinct-MI355X-OAM", 288, 2500, 157.3, None, "amd-mi355x"),
    _dev(_G, "Radeon-R9-200-HD-7900", "AMD-Radeon-R9-200-HD-7900", None, None, None, None, bf16=False),
    _dev(_G, "Radeon-HD-7900", "AMD-Radeon-HD-7900", None, None, None, None, bf16=False),
    # Intel: Data Center GPU Max (Ray resource GPU) and Gaudi (HPU; Ray reports Intel-<device name>)
    _dev(_G, "GPU-Max-1100", "Intel-GPU-Max-1100", 48, 352, 22.2, None, "intel-max-1100"),
    _dev(_G, "GPU-Max-1550", "Intel-GPU-Max-1550", 128, 838.9, 52.4, None, "intel-max-1550"),
    _dev("hpu", "Gaudi", "Intel-GAUDI", 32, None, None, 1.639, "intel-gaudi", "gaudi1"),
    _dev("hpu", "Gaudi2", "Intel-GAUDI2", 96, None, None, None, "intel-gaudi2"),
    _dev("hpu", "Gaudi3", "Intel-GAUDI3", 128, 1835, None, None, "intel-gaudi3"),
    # AWS Inferentia/Trainium: Ray reports one type for every NeuronCore (Inf2, Trn1 and Trn2
    # cores differ in memory and speed), so nothing per device is known from the type.
    _dev("neuron", "aws-neuron-core", "aws-neuron-core", None, None, None, None, "neuron", "neuron-core",
         "inferentia", "trainium"),
    # Google TPUs (per chip)
    _tpu("TPU-v2", "TPU-V2", 16, 45, None, 1.125, "v2", "tpuv2",
         chips_per_host=4, slice_unit=2, single_host_chips=(4,), topology_dims=2),
    _tpu("TPU-v3", "TPU-V3", 32, 123, None, 2.00, "v3", "tpuv3",
         chips_per_host=4, slice_unit=2, single_host_chips=(4,), topology_dims=2),
    _tpu("TPU-v4", "TPU-V4", 32, 275, 137.5, 3.22, "v4", "tpuv4",
         chips_per_host=4, slice_unit=2, single_host_chips=(4,), topology_dims=3),
    _tpu("TPU-v5e", "TPU-V5LITEPOD", 16, 197, 98.5, 1.20, "v5e", "tpu-v5litepod", "v5litepod",
         chips_per_host=4, slice_unit=1, single_host_chips=(1, 4, 8), topology_dims=2, pod_prefix="v5litepod"),
    _tpu("TPU-v5p", "TPU-V5P", 95, 459, 229.5, 4.20, "v5p",
         chips_per_host=4, slice_unit=2, single_host_chips=(4,), topology_dims=3),
    _tpu("TPU-v6e", "TPU-V6E", 32, 918, 459, 2.70, "v6e", "trillium",
         chips_per_host=4, slice_unit=1, single_host_chips=(1, 4, 8), topology_dims=2),
    # Others Ray names
    _dev("npu", "Ascend910B", "Ascend910B", 64, None, None, None, "huawei-910b"),
    _dev("npu", "Ascend910B4", "Ascend910B4", 32, None, None, None, "huawei-910b4"),
    _dev(_G, "MXC500", "MXC500", 64, None, None, None, "metax-c500"),
    _dev(_G, "MXC550", "MXC550", None, None, None, None, "metax-c550"),
    _dev("furiosa", "RNGD", "FURIOSA_RNGD", 48, 256, None, None, "furiosa-rngd"),
    _dev("mblt", "ARIES", "MOBILINT_ARIES", None, None, None, None, "mobilint-aries"),
    _dev("mblt", "REGULUS", "MOBILINT_REGULUS", None, None, None, None, "mobilint-regulus"),
    # Apple silicon (Ray resource GPU; memory is the machine's, shared with the CPU)
    *(_dev(_G, name, name, None, None, None, None, bf16=False) for name in (
        "M1", "M1-Pro", "M1-Max", "M1-Ultra", "M2", "M2-Pro", "M2-Max", "M2-Ultra", "M3", "M3-Pro", "M3-Max",
        "Apple-Silicon")),
)
