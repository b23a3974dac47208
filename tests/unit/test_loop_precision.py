"""orch's precision decision as loops see it: autocast, GradScaler, Keras policy (CPU-safe)."""

from __future__ import annotations

import pytest

from orchestrator import loop
from orchestrator.core.protocol import PRECISION_ENV

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("precision, dtype", [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_follows_the_precision(monkeypatch, precision, dtype):
    monkeypatch.setenv(PRECISION_ENV, precision)
    with loop.autocast(torch.device("cpu")):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == (dtype or torch.float32) or (dtype is torch.float16 and out.dtype == torch.float32)


@pytest.mark.parametrize("precision, enabled", [("fp32", False), ("bf16", False), ("fp16", True)])
def test_grad_scaler_only_scales_fp16(monkeypatch, precision, enabled):
    monkeypatch.setenv(PRECISION_ENV, precision)
    assert loop.grad_scaler(torch.device("cpu")).is_enabled() is enabled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_on_the_gpu(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    device = torch.device("cuda")
    with loop.autocast(device):
        out = torch.ones(64, 64, device=device) @ torch.ones(64, 64, device=device)
    assert out.dtype == torch.bfloat16


def test_keras_policy_follows_the_precision(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    try:
        for precision, name in [("bf16", "mixed_bfloat16"), ("fp16", "mixed_float16"), ("fp32", "float32")]:
            monkeypatch.setenv(PRECISION_ENV, precision)
            assert loop.keras_policy() == name
            assert tf.keras.mixed_precision.global_policy().name == name
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
