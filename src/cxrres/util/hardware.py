"""What this machine's CPU can do, where the automatic settings depend on it."""

from __future__ import annotations


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX or AVX512-BF16); bf16 autocast + channels_last then train
    DenseNet-121 1.65-2.4x faster than fp32 NCHW (benchmarks/RESULTS.md)."""
    import torch

    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and bool(check()) for check in checks)
