"""The CPU's model name and feature flags, from /proc/cpuinfo (no torch): benchmarks record them, and the int8 and
bf16 paths depend on them (VNNI, AVX512-BF16, AMX)."""

import platform
from typing import List, Optional, Sequence

__all__ = ["INT8_DOT_PRODUCT_FLAGS", "cpu_flags", "cpu_model", "x86_without_int8_dot_product"]

INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def _cpuinfo(field: str) -> Optional[str]:
    """The first /proc/cpuinfo line's value for `field` ('model name', 'flags'); None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> List[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo has none)."""
    return (_cpuinfo("flags") or "").split()


def x86_without_int8_dot_product(flags: Sequence[str]) -> bool:
    """An x86 CPU (AVX2) without VNNI or AMX-INT8, the instructions that sum u8 x s8 products into int32. Its int8
    GEMMs go through saturating int16 pair sums (`vpmaddubsw`), need 7-bit activations, and run little faster than
    fp32 ones (1.22x oneDNN's fp32 linears on LITv2-S, AVX2-only AMD EPYC, 2026-12-05). False where the flags are
    unknown (empty) or not x86's."""
    return "avx2" in flags and not any(f in flags for f in INT8_DOT_PRODUCT_FLAGS)
