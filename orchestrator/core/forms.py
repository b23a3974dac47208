"""The string forms the job spec allows, parsed once into typed values: sizes (``2GiB``),
parameter counts (``350M``), durations (``45m``), worker ranges (``"2..8"``) and accelerator
choices (``A100:1``, ``[A100:1, GPU:1]``, ``{any_of: [...]}``). ``spec.py`` uses them as field types.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationInfo, WithJsonSchema

from orchestrator.core import hardware
from orchestrator.core.hardware import AcceleratorRequest

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: Any) -> int:
    """``2GiB`` -> 2147483648; ``16GB`` -> 16000000000; a bare int is bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; write e.g. 2GiB or 512MiB")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{value!r}: a size must be positive")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size; write e.g. 2GiB or 512MiB")
    match = _BYTES.match(value)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _BYTE_UNITS:
        raise ValueError(f"{value!r} is not a size; write a number with KiB, MiB, GiB, TiB, KB, MB, GB or TB (2GiB)")
    size = int(float(match.group(1)) * _BYTE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"{value!r}: a size must be positive")
    return size


_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMbBtT]?)\s*$")


def parse_count(value: Any) -> int:
    """``350M`` -> 350_000_000; ``7B``; a bare int."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not a parameter count; write e.g. 350M or 7B")
    if isinstance(value, int):
        count = value
    else:
        match = _COUNT.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a parameter count; write an int or a number with K, M or B (350M)")
        count = int(float(match.group(1)) * _COUNT_SUFFIX[match.group(2).lower()])
    if count <= 0:
        raise ValueError(f"{value!r}: the parameter count must be positive")
    return count


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_DURATION_FORM = "write a number with s, m, h or d, such as 90s, 45m, 2h or 1.5d"


class Duration(BaseModel):
    """A span of time as the spec wrote it (``2h``), and in seconds: reasons quote the text."""

    model_config = ConfigDict(frozen=True)
    seconds: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_duration(value: Any) -> Duration:
    """``45m`` -> 2700 s; ``2h``; ``1.5d``. A bare number is refused: its unit would be a guess."""
    if isinstance(value, Duration):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit; {_DURATION_FORM}")
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a duration; {_DURATION_FORM}")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be positive")
    return Duration(seconds=seconds, text=f"{match.group(1)}{match.group(2)}")


class WorkerRange(BaseModel):
    """``workers``: a fixed count, or ``"MIN..MAX"`` for elastic training."""

    model_config = ConfigDict(frozen=True)
    min: int
    max: int

    @property
    def elastic(self) -> bool:
        return self.min != self.max

    def __str__(self) -> str:
        return str(self.max) if not self.elastic else f"{self.min}..{self.max}"

    def to_yaml(self) -> int | str:
        """The spec form, parseable again: ``4`` or ``"2..8"``."""
        return str(self) if self.elastic else self.max


def parse_workers(value: Any) -> WorkerRange:
    if isinstance(value, WorkerRange):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"must be at least 1, got {value!r}")
        return WorkerRange(min=value, max=value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", value)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low < 1:
                raise ValueError(f"{value!r}: the minimum must be at least 1")
            if low > high:
                raise ValueError(f"{value!r}: the minimum is larger than the maximum; write {high}..{low}")
            return WorkerRange(min=low, max=high)
    raise ValueError(f"{value!r} is not a worker count; write an int >= 1 or a range MIN..MAX such as 2..8")


class AcceleratorChoice(BaseModel):
    """``resources.accelerator``: options tried in order, or any of them (cheapest wins)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    options: tuple[AcceleratorRequest, ...]
    ordered: bool = True

    def __str__(self) -> str:
        text = ", ".join(str(o) for o in self.options)
        if len(self.options) == 1:
            return text
        return f"[{text}]" if self.ordered else f"any_of [{text}]"

    def to_yaml(self) -> str | list[str] | dict[str, list[str]]:
        """The spec form this choice was written in, parseable again."""
        names = [str(o) for o in self.options]
        if not self.ordered:
            return {"any_of": names}
        return names[0] if len(names) == 1 else names


# Validation context key: the accelerator types a spec may name beyond the catalog
# (``hardware.by_name`` of a cluster's custom types). Given, a type outside both is an error;
# left out, such a type parses as one only the spec names, for the cluster to judge.
ACCELERATOR_TYPES = "accelerator_types"


def _accelerator_field(value: Any, info: ValidationInfo) -> AcceleratorChoice:
    return parse_accelerator_choice(value, (info.context or {}).get(ACCELERATOR_TYPES))


def parse_accelerator_choice(value: Any, custom: dict | None = None) -> AcceleratorChoice:
    if isinstance(value, AcceleratorChoice):
        return value
    ordered = True
    if isinstance(value, dict):
        if set(value) != {"any_of"}:
            raise ValueError(f"a mapping here must be {{any_of: [...]}}, got keys {sorted(value)}")
        value, ordered = value["any_of"], False
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("the list of accelerator options is empty")
    options = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an accelerator string such as GPU:1 or TPU-v4-16")
        options.append(hardware.parse_accelerator(item, custom))
    if len(options) > 1 and any(o.kind == "auto" for o in options):
        raise ValueError("auto cannot be combined with other options")
    if len({str(o) for o in options}) != len(options):
        raise ValueError("an accelerator option is listed twice")
    return AcceleratorChoice(options=tuple(options), ordered=ordered)


_ACCELERATOR_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"type": "object", "properties": {"any_of": {"type": "array", "items": {"type": "string"}}},
         "required": ["any_of"], "additionalProperties": False},
    ],
    "description": "CPU, GPU:N, TYPE:N (A100:1), TPU-v5e:4, a TPU slice (TPU-v4-16), auto; "
    "a list tries options in order, {any_of: [...]} picks the cheapest",
}

Bytes = Annotated[
    int,
    BeforeValidator(parse_bytes),
    WithJsonSchema({"anyOf": [{"type": "string", "examples": ["2GiB"]}, {"type": "integer"}]}),
]
Count = Annotated[
    int,
    BeforeValidator(parse_count),
    WithJsonSchema({"anyOf": [{"type": "string", "examples": ["350M"]}, {"type": "integer"}]}),
]
TimeSpan = Annotated[
    Duration,
    BeforeValidator(parse_duration),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhd]\s*$", "examples": ["45m", "2h"]}),
]
Workers = Annotated[
    WorkerRange,
    BeforeValidator(parse_workers),
    PlainSerializer(WorkerRange.to_yaml),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\d+\.\.\d+$"}]}),
]
Accelerators = Annotated[
    AcceleratorChoice,
    BeforeValidator(_accelerator_field),
    PlainSerializer(AcceleratorChoice.to_yaml),
    WithJsonSchema(_ACCELERATOR_SCHEMA),
]
